"""Quantize -> host parity -> recover: the recipes a backend proposes are measured in order; when none
holds the profile's thresholds, the most harmful nodes go back to float, in the order the per-tensor
table measures (packager/quant/tensors.py), until parity holds or `quantization.max_fallbacks` /
`max_attempts` / `search_seconds` run out. When it still fails, the error names the first tensor
where the quantized (or fp16) model left the float one, lists every failing output and the recipes
tried; the full table goes to --json and the --debug log.

Every attempt is recorded (recipe, metrics, pass/fail, seconds) and lands in the manifest's
`quantization.attempts`; calibration ranges, the pre-processed graph and the float model's captured
tensors are computed once and reused by every attempt.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from agent import parity as core

from .. import parity as host_parity
from ..errors import ConversionError, short
from ..formats import Artifact
from . import head, recipes, tail, tensors

log = logging.getLogger(__name__)

DEBUG_SAMPLES = 2            # samples the per-tensor table runs on (of the parity samples)
EARLY_ROUNDS = 2             # fallback rounds on the first recipe before fewer op types are tried
COSTLY_FACTOR = 5.0          # histogram calibration vs MinMax, measured 4-9x (bench/zoo_prep.md)


@dataclass
class Trial:
    plan: Any
    art: Artifact
    parity: dict
    runtime: Any
    score: float


@dataclass
class Outcome:
    artifact: Artifact
    parity: dict
    runtime: Any
    thresholds: dict
    record: dict = field(default_factory=dict)   # the manifest's quantization additions
    full: Trial | None = None   # with nodes left in float: the same recipe with every node quantized


@dataclass
class _Search:
    backend: Any
    float_art: Artifact
    calibration: list | None
    workdir: Any
    profile: Any
    samples: list
    reference: list
    settings: dict
    thresholds: dict
    started: float = field(default_factory=time.perf_counter)
    attempts: list = field(default_factory=list)
    tables: dict = field(default_factory=dict)      # artifact path -> captured comparison
    plain: dict = field(default_factory=dict)       # plan -> its trial, for plans without float nodes
    memo: dict = field(default_factory=dict)        # plan -> its trial (None: it failed): never measured twice
    chain_end: dict = field(default_factory=dict)   # plan without float nodes -> the last fallback trial on it
    skipped: list = field(default_factory=list)     # attempts the budget did not allow
    errors: list = field(default_factory=list)      # the ConversionErrors of attempts that produced no model
    first_static_s: float | None = None

    # -- budget
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def may_try(self, plan) -> str | None:
        """Why this attempt is skipped (None: go)."""
        q = self.profile.quantization
        if not self.attempts:
            return None
        if len(self.attempts) >= q.max_attempts:
            return f"max_attempts {q.max_attempts} reached"
        left = q.search_seconds - self.elapsed()
        if left <= 0:
            return f"search_seconds {q.search_seconds:g} spent"
        if recipes.is_costly(plan) and self.first_static_s and self.first_static_s * COSTLY_FACTOR > left:
            return f"histogram calibration would take ~{self.first_static_s * COSTLY_FACTOR:.0f} s, {left:.0f} s left"
        return None

    # -- one attempt
    def attempt(self, plan, why: str) -> Trial | None:
        if plan in self.memo:
            return self.memo[plan]
        self.memo[plan] = None
        t0 = time.perf_counter()
        rec = {"recipe": recipes.describe(plan), "label": recipes.label(plan), "why": why}
        try:
            art = self.backend.quantize(self.float_art, plan, self.calibration, self.workdir, self.profile)
            rt = host_parity.load_on_host(art, self.settings)
            got = host_parity.run_artifact(art, self.samples, self.settings, rt=rt)
        except ConversionError as exc:
            self.errors.append(exc)
            rec.update(passed=False, error=exc.message, seconds=round(time.perf_counter() - t0, 2))
            self.attempts.append(rec)
            log.info("recipe %s: %s", rec["label"], exc.message)
            return None
        par = host_parity.check(self.reference, got, self.thresholds)
        score = core.score(par)
        seconds = time.perf_counter() - t0
        if plan.precision == "int8" and plan.mode == "static" and self.first_static_s is None:
            self.first_static_s = seconds
        rec.update(passed=par["passed"], score=round(score, 6), outputs=_metrics(par), seconds=round(seconds, 2))
        if not par["passed"]:
            rec["failures"] = core.describe_failures(par)
        self.attempts.append(rec)
        trial = Trial(plan, art, par, rt, score)
        self._release(trial)
        self.memo[plan] = trial
        if not plan.float_nodes:
            self.plain[plan] = trial       # what a fallback's cost is measured against
        log.info("recipe %s: %s (score %.5f, %.1f s)", rec["label"], "pass" if par["passed"] else "fail",
                 score, seconds)
        return trial

    def _release(self, newest: Trial) -> None:
        """Keep loaded sessions only where they are used again: the newest trial (the one chosen when
        it passes), the best so far (the next fallback chain may start there) and the plain recipes
        (what a fallback's cost is timed against)."""
        done = [t for t in self.memo.values() if t is not None]
        best = max(done + [newest], key=lambda t: t.score)
        for t in done:
            if t is not best and t.plan.float_nodes:
                t.runtime = None

    def step(self, plan, why: str, best: Trial) -> tuple[Trial | None, Trial]:
        """One attempt within the budget: (its trial, or None when the budget stops it or it made no
        model; the better of it and `best`)."""
        stop = self.may_try(plan)
        if stop:
            self.skip(plan, stop)
            return None, best
        trial = self.attempt(plan, why)
        if trial is not None and trial.score > best.score:
            best = trial
        return trial, best

    def skip(self, plan, why: str) -> None:
        self.skipped.append({"label": recipes.label(plan), "recipe": recipes.describe(plan), "skipped": why})

    # -- the per-tensor table
    def table(self, trial: Trial) -> dict | None:
        key = str(trial.art.path)
        if key not in self.tables:
            t0 = time.perf_counter()
            try:
                cap = self.backend.tensor_errors(self.float_art, trial.art, self.samples[:DEBUG_SAMPLES],
                                                 self.workdir)
            except Exception as exc:  # noqa: BLE001 - a diagnosis that fails must not hide the parity result
                log.warning("the per-tensor comparison failed: %s: %s", type(exc).__name__, short(exc))
                cap = None
            if cap is not None:
                cap["rows"] = tensors.table(cap["nodes"], cap.pop("accumulator"), self.thresholds.get("slice_atol"))
                cap["floor_db"] = tensors.floor_db(self.thresholds)
                cap["first"] = tensors.first_diverging(cap["rows"], cap["floor_db"])
                if cap["first"] and cap["first"]["node"] not in cap["candidates"]:
                    by = {r["tensor"]: r for r in cap["rows"]}
                    owners = tensors.owners_of(cap["first"]["tensor"], cap["nodes"], by, cap["candidates"])
                    if owners:
                        cap["first"]["quantized_as"] = sorted(owners)
                cap["seconds"] = round(time.perf_counter() - t0, 2)
                log.debug("per-tensor table of %s (%s, %d tensors, %.1f s): %s", recipes.label(trial.plan),
                          cap["kind"], len(cap["rows"]), cap["seconds"], cap["rows"])
            self.tables[key] = cap
        return self.tables[key]


def _metrics(par: dict) -> dict:
    out = {}
    for o in par["outputs"]:
        m = {k: round(o[k], 6) for k in ("cosine",) if k in o}
        if "cosine" in o.get("worst_sample", {}):
            m["worst_sample_cosine"] = round(o["worst_sample"]["cosine"], 6)
        elif "worst_sample" in o:   # one number per sample: judged by its difference
            m["worst_sample_max_abs"] = round(o["worst_sample"]["max_abs"], 6)
        if "worst_slice" in o:
            m["worst_slice"] = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in o["worst_slice"].items()}
        if "top1_agreement" in o:
            m["top1"] = round(o["top1_agreement"], 4)
        out[o["name"]] = m
    return out


def _next_count(have: int, cap: int) -> int:
    """Fallback sizes grow 1, 2, 4, 8 ... so the number of rounds stays logarithmic."""
    return min(cap, max(1, have * 2) if have else 1)


def run(backend, float_art: Artifact, plan, calibration, workdir, profile, samples: list[dict],
        reference: list[dict], settings: dict, label: str, diagnose: bool = False) -> Outcome:
    """samples: the parity inputs in the model's layout; reference: the ORIGINAL model's outputs."""
    thresholds = host_parity.thresholds_for(profile, float_art, reference)
    plan, decisions = recipes.resolve(plan, profile)
    s = _Search(backend, float_art, calibration, workdir, profile, samples, reference, settings, thresholds)
    candidates = backend.recipes(plan, float_art, profile) if plan.precision != "fp32" else [plan]
    # Stay as integer as possible: the first (fullest) recipe, then a few of its nodes in float, then
    # the other cheap recipes (fewer op types, dynamic), then more fallbacks on the best so far, then
    # histogram calibration (4-9x MinMax's time) on the best recipe and its fallbacks; the budget
    # (max_attempts, search_seconds) bounds it all.
    cheap = [c for c in candidates if not recipes.is_costly(c)]
    chosen, best = _measure(s, cheap[:1])
    fallback = plan.precision != "fp32" and profile.quantization.max_fallbacks > 0
    if chosen is None and best is not None and fallback:
        chosen, best = _fall_back(s, best, rounds=EARLY_ROUNDS)
    if chosen is None:
        chosen, other = _measure(s, cheap[1:], first=False)
        if other is not None and (best is None or other.score > best.score):
            best = other
    if chosen is None and best is not None and fallback:
        chosen, best = _fall_back(s, best)
    if chosen is None and best is not None and fallback and profile.quantization.float_head:
        chosen, best = head.recover(s, best)
    if chosen is None:
        costly = [c for c in candidates if recipes.is_costly(c)]
        if best is not None:
            costly = [dataclasses.replace(c, float_nodes=best.plan.float_nodes) if c.op_types == best.plan.op_types
                      else c for c in costly]
        chosen, other = _measure(s, costly, first=False)
        if other is not None and (best is None or other.score > best.score):
            best = other
    if chosen is None and best is not None and profile.quantization.tail_fallbacks > 0:
        chosen, best = tail.recover(s, best)
    if chosen is None:
        _fail(s, best, label, plan)
    if chosen.runtime is None:     # a trial measured earlier whose session was let go
        chosen.runtime = host_parity.load_on_host(chosen.art, settings)
    record = {"recipe": recipes.describe(chosen.plan), "recipe_label": recipes.label(chosen.plan),
              "float_nodes": list(chosen.plan.float_nodes), **decisions}
    if chosen.plan.float_tail:
        record["float_tail"] = chosen.plan.float_tail
    if chosen.plan.float_head:
        record["float_head"] = chosen.plan.float_head
    if plan.precision != "fp32":
        record["attempts"] = s.attempts + s.skipped
        record["search_seconds"] = round(s.elapsed(), 2)
    full = s.plain.get(dataclasses.replace(chosen.plan, float_nodes=(), float_tail=0, float_head=0)) \
        if chosen.plan.float_nodes else None
    if diagnose:
        record["diagnosis"] = _diagnosis(s, chosen)
    info = {**chosen.art.info, **record}
    return Outcome(chosen.art.replace(info=info), chosen.parity, chosen.runtime, thresholds, record, full)


def _measure(s: _Search, plans: list, first: bool = True) -> tuple[Trial | None, Trial | None]:
    """Try the plans in order until one passes; returns (the passing trial, the best trial)."""
    best = None
    for i, cand in enumerate(plans):
        stop = s.may_try(cand)
        if stop:
            s.skip(cand, stop)
            continue
        trial = s.attempt(cand, "first recipe" if first and i == 0 else "the recipes before it failed parity")
        if trial is None:
            continue
        if best is None or trial.score > best.score:
            best = trial
        if trial.parity["passed"]:
            return trial, best
    return None, best


def _fall_back(s: _Search, best: Trial, rounds: int | None = None) -> tuple[Trial | None, Trial]:
    """Leave the most harmful nodes in float, re-measuring after every round (at most `rounds`)."""
    cap = s.profile.quantization.max_fallbacks
    key = dataclasses.replace(best.plan, float_nodes=())
    current = s.chain_end.get(key, best) if not best.plan.float_nodes else best   # resume a chain
    done = 0
    while len(current.plan.float_nodes) < cap and (rounds is None or done < rounds):
        done += 1
        cap_info = s.table(current)
        if cap_info is None:
            log.info("no per-tensor comparison for %s: no fallback possible", s.float_art.format.value)
            break
        have = list(current.plan.float_nodes)
        first = (cap_info["first"] or {}).get("tensor")
        args = (cap_info["nodes"], cap_info["rows"], cap_info["candidates"], set(have), cap_info["floor_db"])
        ranked = tensors.rank_nodes(*args, until=first) or tensors.rank_nodes(*args)
        if not ranked:
            break
        want = _next_count(len(have), cap) - len(have)
        new = [r["node"] for r in ranked[:want]]
        if current.plan.precision == "fp16":    # float16 loses range: what feeds a log goes back with it
            for name in list(new):
                new += [c for c in tensors.input_chain(name, cap_info["nodes"], cap_info["candidates"])
                        if c not in have and c not in new]
        plan = dataclasses.replace(current.plan, float_nodes=tuple(have + new))
        why = "fallback: " + ", ".join(f"{r['node']} ({r['op']}, -{r['jump_db']:g} dB)" for r in ranked[:want])
        if len(new) > want:
            why += f"; with the {len(new) - want} element-wise nodes that compute a log's or root's input"
        trial, best = s.step(plan, why, best)
        if trial is None:
            break
        s.chain_end[key] = trial
        if trial.parity["passed"]:
            return trial, best
        current = trial
    return None, best


def _diagnosis(s: _Search, trial: Trial) -> dict:
    cap = s.table(trial)
    if cap is None:
        return {"covered": False,
                "note": f"no per-tensor comparison for {trial.art.format.value} {trial.plan.precision}: the "
                        "tensors cannot be matched by name (only the outputs are compared)"}
    return {"covered": True, "kind": cap["kind"], "samples": cap["samples"], "seconds": cap["seconds"],
            "floor_db": cap["floor_db"],
            **tensors.summary(cap["rows"], cap["first"], cap["floor_db"]), "rows": cap["rows"]}


def _no_fallback_hint(profile) -> str:
    tail = profile.quantization.tail_fallbacks
    allowed = f"no node in float but a tail of at most {tail} final ops" if tail else "no node in float"
    return (f"profile {profile.name} allows {allowed}, and this model does not hold int8 that way "
            "(`edgepack diagnose` shows the error growing tensor by tensor); build it at a float precision "
            "(--profile android: TF-Lite fp16, raspberry-pi: fp32) or for int8 that may leave nodes in float "
            "(quantization.max_fallbacks > 0: x86-cpu-int8)")


def _fail(s: _Search, best: Trial | None, label: str, plan) -> None:
    tried = "; ".join(f"{a['label']}: " + (f"{a['score']:.4f}" if "score" in a else a.get("error", "error"))
                      for a in s.attempts)
    details = {"attempts": s.attempts + s.skipped, "search_seconds": round(s.elapsed(), 2)}
    if best is None and len(s.errors) == 1:
        raise s.errors[0]            # one recipe, one failure: its own message and fix
    if best is None:
        raise ConversionError(f"no {plan.precision} recipe produced a model that runs for {label}: {tried}",
                              "try another precision (--precision fp16 / fp32) or --format") from None
    where, hint = "", host_parity.HINT
    if plan.precision != "fp32":
        diag = _diagnosis(s, best)
        details["diagnosis"] = diag
        if diag.get("covered"):
            first = diag["first_diverging"] or {}
            where = f"first diverging tensor: {tensors.describe(first)} | "
            if first.get("op") in ("Concat", "CONCATENATION") and (first.get("worst_slice") or {}).get("sqnr_db", 99) < 10:
                hint = ("a Concat joins values of different ranges (boxes in pixels, scores in [0, 1]) under one "
                        "int8 scale: leave it in float (quantization.max_fallbacks > 0, or at the graph's end "
                        "quantization.tail_fallbacks > 0), or export the model with those parts as separate outputs")
            elif plan.precision == "int8" and s.profile.quantization.max_fallbacks == 0:
                hint = _no_fallback_hint(s.profile)
        else:
            where = f"no per-tensor comparison for {best.art.format.value} {plan.precision} | "
    else:
        details["diagnosis"] = {"covered": False, "note": "fp32: the model is the converted graph itself; a "
                                "conversion's tensors are named differently on each side (onnx2tf's -cotof "
                                "compares an ONNX graph with its TF-Lite tensors)"}
    details["host_parity"] = best.parity
    n = len(s.attempts)
    tries = f" | {n} recipe{'s' if n != 1 else ''} tried ({tried})" if plan.precision != "fp32" else ""
    raise host_parity.ParityFailed(
        f"host parity failed for {label}: {where}{host_parity.failure_line(best.parity)}{tries}",
        hint, details)
