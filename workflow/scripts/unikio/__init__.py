"""Importable, unit-tested logic of the unikernel I/O study pipeline.

The scripts in workflow/scripts/ that receive Snakemake's `snakemake` object
stay thin and delegate to these modules.
"""
