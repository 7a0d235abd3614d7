"""DNA sequence: reference windows, personal haplotypes and their one-hot encoding.

Imported lazily (numpy, pyfaidx, cyvcf2 are used inside); ``epx.cli`` never imports it.
"""
