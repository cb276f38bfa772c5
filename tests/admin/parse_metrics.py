#!/usr/bin/python3
"""Parses a Prometheus text exposition (format 0.0.4) with the reference parser and prints it as
JSON, for tests/admin/metrics_test.cc.

Usage: /usr/bin/python3 parse_metrics.py FILE (Debian's python: the parser is Debian's package
python3-prometheus-client, which another python on PATH may not see)

Output: {"families": {NAME: {"type": TYPE, "help": HELP}},
         "samples": [{"family": NAME, "name": SAMPLE_NAME, "labels": {...}, "value": V}, ...]}
Family names are as the parser reports them (a counter's without its "_total"). Exit status 1,
with the parser's error on stderr, when the text does not parse.
"""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as f:
        text = f.read()
    families = {}
    samples = []
    try:
        for family in text_string_to_metric_families(text):
            if family.name in families:
                raise ValueError(f"family {family.name} appears twice")
            families[family.name] = {"type": family.type, "help": family.documentation}
            for sample in family.samples:
                samples.append({"family": family.name, "name": sample.name,
                                "labels": dict(sample.labels), "value": sample.value})
    except Exception as error:  # the parser raises ValueError and others on bad input
        print(f"parse_metrics: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    json.dump({"families": families, "samples": samples}, sys.stdout, allow_nan=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
