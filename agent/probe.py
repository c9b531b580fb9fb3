"""Latency probe: warm up, then time single inferences by count and by time."""
import math
import time


def percentile(sorted_values, q):
    """Linear-interpolated percentile (numpy's default) of an already sorted list."""
    if not sorted_values:
        return None
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def _loop(run, feeds, min_count, min_seconds, max_seconds, clock=time.perf_counter):
    """Run until at least min_count runs AND min_seconds elapsed, or max_seconds is reached."""
    times = []
    start = clock()
    while True:
        t0 = clock()
        run(feeds)
        t1 = clock()
        times.append(t1 - t0)
        elapsed = t1 - start
        if (len(times) >= min_count and elapsed >= min_seconds) or elapsed >= max_seconds:
            return times, elapsed


def stats_ms(times):
    ms = sorted(t * 1000.0 for t in times)
    n = len(ms)
    mean = sum(ms) / n
    var = sum((x - mean) ** 2 for x in ms) / n
    return {"runs": n, "mean_ms": mean, "std_ms": math.sqrt(var), "min_ms": ms[0],
            "p50_ms": percentile(ms, 50), "p90_ms": percentile(ms, 90),
            "p95_ms": percentile(ms, 95),
            # p99 of fewer than 1000 runs is an estimate of the max, not a percentile.
            "p99_ms": percentile(ms, 99) if n >= 1000 else None,
            "max_ms": ms[-1]}


def probe(run, feeds, settings):
    """settings: warmup_runs, warmup_seconds, runs, seconds, max_seconds."""
    warmup_runs = int(settings.get("warmup_runs", 10))
    warmup_seconds = float(settings.get("warmup_seconds", 0.5))
    runs = max(1, int(settings.get("runs", 100)))
    seconds = float(settings.get("seconds", 1.0))
    max_seconds = float(settings.get("max_seconds", 30.0))

    t0 = time.perf_counter()
    run(feeds)
    first_run = time.perf_counter() - t0

    warm_count, warm_elapsed = 0, 0.0
    if warmup_runs > 0 or warmup_seconds > 0:
        warm, warm_elapsed = _loop(run, feeds, warmup_runs, warmup_seconds, max_seconds / 2.0)
        warm_count = len(warm)
    times, elapsed = _loop(run, feeds, runs, seconds, max_seconds)
    result = {"first_run_ms": first_run * 1000.0, "warmup_runs": warm_count,
              "warmup_seconds": warm_elapsed, "measure_seconds": elapsed,
              "hit_time_cap": len(times) < runs}
    result.update(stats_ms(times))
    return result
