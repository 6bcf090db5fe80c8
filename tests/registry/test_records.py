"""What the registry's records answer themselves."""

from __future__ import annotations

from tests.helpers import lenet_weights, load_model_spec


def test_the_default_version_is_alias_default_else_the_newest(registry):
    spec = load_model_spec("lenet")
    registry.register("m", spec, lenet_weights(0))
    registry.register("m", spec, lenet_weights(1))
    assert registry.model("m").default_version == 2
    registry.set_alias("m", "default", 1)
    assert registry.model("m").default_version == 1
    assert [m.default_version for m in registry.list_models().items] == [1]
