"""The synthetic operator (``foresight simulate``) and record replay (``foresight replay``).

A seeded, deterministic telecom operator: subscribers, cells and fibre lines whose source
systems (BSS, HSS, billing, VAS, PCRF, MNP, network OSS, contact center, campaigns) emit
correlated events into every input topic, with deliberately injected cross-system faults,
complaint and churn stories, degrading cells and lines, protected contact requests and
broken records, all written to a ground-truth JSONL that later capabilities are scored
against. Generators are pure; only ``producer`` touches Kafka. See docs/simulator.md.
"""
