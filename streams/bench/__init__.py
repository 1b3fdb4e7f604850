"""``foresight bench``: a repeatable benchmark harness that always measures baselines beside us.

Absolute throughput on shared 2-core machines swings 3-4x from day to day while ratios hold
(see the field notes), so every figure Foresight publishes is a ratio against baselines run
in the same process tree, on the same broker, over the same pre-filled topics:

* :mod:`streams.bench.dataset`  - deterministic, schema-valid input events (pure, no Kafka)
* :mod:`streams.bench.report`   - statistics, the result table, machine facts (pure)
* :mod:`streams.bench.kafka`    - produce the dataset, create and clean up run topics
* :mod:`streams.bench.procs`    - child processes with timeouts, progress and clean kills
* :mod:`streams.bench.lines`    - baseline consumers (aiokafka, Faust, Quix), run as children
* :mod:`streams.bench.worker`   - the real ``foresight worker`` line and end-to-end latency
* :mod:`streams.bench.ingest`   - ``foresight bench ingest`` orchestration
* :mod:`streams.bench.restore`  - ``foresight bench restore`` (1M subscribers' state)
* :mod:`streams.bench.command`  - argparse wiring (discovered by ``streams.cli``)
"""
