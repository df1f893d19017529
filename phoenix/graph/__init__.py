"""A picture of the estate: `phoenix graph` and `doit plan --graph` (model: the graph, pure; mermaid, dot: renderers)."""
