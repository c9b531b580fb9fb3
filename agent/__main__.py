"""python3 -m agent {selftest,facts,...} — the device side of edgepack.

stdout carries only the report (JSON with --json); diagnostics go to stderr.
Exit codes: 0 pass, 1 a check failed, 2 unusable bundle or bad usage.
"""
import argparse
import json
import os
import sys


def _dump(obj):
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


def _text_report(report):
    v = report["verdict"]
    lines = ["bundle   %s" % report["bundle"].get("path"),
             "id       %s" % report.get("bundle_id"),
             "verdict  %s" % v["status"].upper()]
    for reason in v["reasons"]:
        lines.append("  - %s" % reason)
    lat = report.get("latency")
    if lat:
        lines.append("latency  p50 %.3f ms  p90 %.3f ms  (%d runs, %s)"
                     % (lat["p50_ms"], lat["p90_ms"], lat["runs"], lat.get("provider")))
    return "\n".join(lines) + "\n"


def _missing_numpy_report(args, exc):
    from . import report as rep
    report = rep.new_report(args.bundle)
    report["finished"] = rep.now_iso()
    report["verdict"] = {"passed": False, "status": "unusable",
                         "reasons": ["numpy is not importable on this device (%s) (fix: pip install "
                                     "numpy)" % exc]}
    return report


def cmd_selftest(args):
    try:
        from . import selftest
    except ImportError as exc:  # numpy missing: still answer with a report
        report = _missing_numpy_report(args, exc)
        if args.json:
            _dump(report)
        else:
            sys.stdout.write(_text_report(report))
        return 2
    overrides = {}
    if args.runs is not None:
        overrides["runs"] = args.runs
    if args.seconds is not None:
        overrides["seconds"] = args.seconds
    if args.warmup is not None:
        overrides["warmup_runs"] = args.warmup
        overrides["warmup_seconds"] = 0.0
    runtime = {}
    if args.threads is not None:
        runtime["threads"] = args.threads
    for key in ("providers", "delegates", "devices"):
        value = getattr(args, key)
        if value is not None:
            runtime[key] = [v for v in value.split(",") if v]
    report, code = selftest.run(args.bundle, overrides, runtime) if runtime else selftest.run(args.bundle, overrides)
    if args.report:
        tmp = args.report + ".tmp"
        with open(tmp, "w") as f:
            json.dump(report, f, indent=2, sort_keys=True, default=str)
        os.replace(tmp, args.report)
    if args.json:
        _dump(report)
    else:
        sys.stdout.write(_text_report(report))
    return code


def cmd_facts(args):
    from . import report
    info = report.facts(only=args.runtime or None)
    if args.json:
        _dump(info)
    else:
        for key in sorted(info):
            sys.stdout.write("%-18s %s\n" % (key, info[key]))
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="python3 -m agent", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command")
    st = sub.add_parser("selftest", help="verify a bundle, check parity, probe latency")
    st.add_argument("bundle", nargs="?", default=".", help="bundle folder (default: .)")
    st.add_argument("--json", action="store_true", help="print the report as JSON")
    st.add_argument("--report", help="also write the JSON report to this file")
    st.add_argument("--runs", type=int, help="override the probe's minimum run count")
    st.add_argument("--seconds", type=float, help="override the probe's minimum time")
    st.add_argument("--warmup", type=int, help="override warm-up runs (and drop warm-up time)")
    st.add_argument("--threads", type=int, help="override the runtime's thread count (0 = its default)")
    st.add_argument("--providers", help="override the execution providers / torch devices, comma-separated")
    st.add_argument("--delegates", help="override the LiteRT delegates, comma-separated ('' for none)")
    st.add_argument("--devices", help="override the OpenVINO devices, comma-separated")
    st.set_defaults(func=cmd_selftest)
    fa = sub.add_parser("facts", help="print device facts (arch, Python, runtimes)")
    fa.add_argument("--json", action="store_true")
    fa.add_argument("--runtime", action="append", help="probe only this runtime (repeatable)")
    fa.set_defaults(func=cmd_facts)
    try:
        from . import device
    except ImportError:
        device = None
    if device is not None and hasattr(device, "register"):
        device.register(sub)
        from . import pull  # stdlib + device.py: `python3 -m agent pull REGISTRY/REPO:TAG`
        pull.register(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
