"""Dataset loaders: synthetic birds, CUB-200-2011, AwA2, FLO and user folders."""
