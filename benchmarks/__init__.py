"""The benchmarks behind scripts/bench. They are not part of the shipped package: nothing in `kb` imports them.

`bench` is the entry point (`python -m benchmarks.bench`, run from the top of the repository by scripts/bench),
`bench_search` times searches in-process, and `corpus` makes the synthetic pages both run on.
"""
