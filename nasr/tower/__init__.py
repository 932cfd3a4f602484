"""Tower search (tower-search-kws-lid): blocks, towers as JSON, the shared candidate store,
Algorithms 1-2 (search with mutation and parameter transfer), TPE tuning and Algorithm 3 (ensembling)."""
