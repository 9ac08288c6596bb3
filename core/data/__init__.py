"""Qt-free data I/O: frame sources (``sources``), YouTube-VIS JSON (``ytvis``, ``validate``, ``rle``),
DAVIS PNG masks (``davis``), category lists (``categories``) and the synthetic generator (``synthetic``)."""
