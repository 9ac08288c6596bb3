"""The authors' released model family (ViT-Adapter + Mask2Former, ROVIS tracking), rebuilt from their configs.

- :mod:`core.model.release.config`: :class:`ReleaseConfig`, the variants and the release's keep schedules;
- :mod:`core.model.release.builder`: ``build_release_model(variant or config)``;
- :mod:`core.model.release.model`: :class:`ReleaseVPPModel`, composition of the parts in ``core/model/``;
- :mod:`core.model.release.checkpoint`: the files ``vpp import-checkpoint`` writes (weights + JSON sidecar).

:data:`core.build.FAMILIES` ``["release"]`` joins them to the session that runs the model.
"""
