"""The scale-out workflow: epx's steps as Snakemake rules, one job per shard.

``epx workflow run CONFIG`` validates the config (:mod:`epx.workflow.config`) and runs the
Snakefile shipped beside this module; Snakemake's executor plugins take the same jobs to SLURM,
Kubernetes or a cloud (``profiles/slurm``).
"""
