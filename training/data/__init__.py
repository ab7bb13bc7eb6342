"""Datasets: raw BP4D / DISFA / unlabelled readers, splits, the preprocessed cache, loaders."""
