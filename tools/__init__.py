"""The repository's tools, outside the installed library: the command line (``python -m tools``), the
local Nuclio server, the function-file generator and the synthetic weights writer."""
