"""PyTensor terms shared by the model builders (gate graphs, local-global prior sds)."""
