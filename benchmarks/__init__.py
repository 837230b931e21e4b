"""triochat's benchmarks, one entry point each, run from the repository root.

    python -m benchmarks.run_all          fan-out, idle and file relay in one go, then the report
    python -m benchmarks.fanout           N clients, K senders: CPU per delivery, latency, losses
    python -m benchmarks.idle             server memory per idle connection
    python -m benchmarks.idle_breakdown   where an idle member's memory goes (tracemalloc)
    python -m benchmarks.file_relay       file relay throughput against socat and a direct copy
    python -m benchmarks.startup          client launch to name received, idle and busy CPUs
    python -m benchmarks.soak             mixed dialects and churn: nothing lost, memory returns
    python -m benchmarks.room_history     what history costs Room.broadcast, in one process
    python -m benchmarks.cluster          --cluster: 1 node vs 2 nodes through Redis vs in memory
    python -m benchmarks.report           RESULTS.md and plots/ from results/*.json

``--help`` on each says its options. The rest is plumbing: ``common`` (ports, /proc figures,
the servers under test, result files), ``loadgen`` (the load-generator worker and the
orchestrator's handle on it), ``triochat_variant`` (triochat with one ``ServerConfig`` lever
off) and ``baselines/naive_chat_server.py``.

Needs ``pip install -e ".[bench]"`` (matplotlib for the plots, pyinstrument for ``--profile``).
The references are Debian/Ubuntu packages, ``apt-get install ncat ngircd socat``; nothing is
installed by the benchmarks: a missing one is skipped, with what to install on stderr.
"""
