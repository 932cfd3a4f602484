"""Deployment: trained networks exported to ONNX and timed, streaming towers (see nasr.bin.export).

The cost model that a search constrains itself with lives beside the search code, in
nasr.nas.cost; this package is about the trained network, after the search."""
