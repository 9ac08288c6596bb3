"""The project's own model family (ViT with Map-SM and selective modules, mask head, embedding tracker).

- :mod:`core.model.vpp.config`: :class:`VPPConfig`, the variants and the config's validation;
- :mod:`core.model.vpp.builder`: ``build_vpp(config)`` and the keep schedules (``keep_for``);
- :mod:`core.model.vpp.model`: :class:`VPPModel`, composition of the parts in ``core/model/``;
- :mod:`core.model.vpp.checkpoint`: safetensors weights + JSON config, written and read strictly.

:data:`core.build.FAMILIES` ``["vpp"]`` joins them to the session that runs the model.
"""
