"""What users hand in: gene tables, labels, track manifests, chromosome names, bigWig and BED files.

Readers only: nothing here computes features or knows about models (``epx.features`` builds on
these modules, never the other way round).
"""
