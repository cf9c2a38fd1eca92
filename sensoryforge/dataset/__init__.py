"""Everything on disk: job folders (the format and its one reader), atomic writes, the aggregated
dataset (HDF5, .pt, index, metadata), tables, plots, comparisons, and torch datasets over them."""
