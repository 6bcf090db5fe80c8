"""The spec vocabulary is documented from the catalogue, so it cannot drift: docs/spec.md is the
generator's output, and /openapi.json has one schema per layer type that accepts every example
and every zoo spec (and refuses what validation refuses)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from service.architecture import Architecture
from service.architecture.reference import example, markdown
from service.catalogue import CATALOGUE

ROOT = Path(__file__).resolve().parents[2]


def test_docs_spec_md_is_current():
    assert (ROOT / "docs" / "spec.md").read_text() == markdown(), (
        "docs/spec.md is stale: .venv/bin/python -m service.architecture.reference > docs/spec.md"
    )


def test_every_type_is_documented_with_a_valid_example():
    text = markdown()
    for name, kind in CATALOGUE.items():
        assert f"### `{name}`" in text
        spec = kind.example_spec()
        assert spec["layers"][-1]["type"] == name
        Architecture.from_spec(spec)  # raises if an example is wrong


def test_the_example_spec_is_valid_and_shown_whole():
    spec = example()
    Architecture.from_spec(spec)
    text = markdown()
    for layer in spec["layers"]:
        assert json.dumps(layer) in text


@pytest.fixture(scope="module")
def openapi():
    from service.app import create_app
    from service.config import Settings

    app = create_app(Settings.from_env({}, database_url="sqlite://"))
    return app.test_client().get("/openapi.json").get_json()


def validator(doc, component):
    root = {"$ref": f"#/components/schemas/{component}", "components": doc["components"]}
    return jsonschema.Draft7Validator(root)


def test_openapi_has_one_schema_per_layer_type_discriminated_by_type(openapi):
    items = openapi["components"]["schemas"]["Spec"]["properties"]["layers"]["items"]
    mapping = items["discriminator"]["mapping"]
    assert items["discriminator"]["propertyName"] == "type"
    assert set(mapping) == set(CATALOGUE) and len(items["oneOf"]) == len(CATALOGUE)
    for name, ref in mapping.items():
        schema = openapi["components"]["schemas"][ref.rsplit("/", 1)[1]]
        assert schema["properties"]["type"]["enum"] == [name]
        assert schema["additionalProperties"] is False
        validator(openapi, ref.rsplit("/", 1)[1]).validate(schema["example"])


@pytest.mark.parametrize("model", sorted(p.stem for p in (ROOT / "models").glob("*.json")))
def test_every_zoo_spec_matches_the_openapi_schema(openapi, model):
    spec = json.loads((ROOT / "models" / f"{model}.json").read_text())
    validator(openapi, "Spec").validate(spec)


def test_the_openapi_schema_refuses_what_validation_refuses(openapi):
    check = validator(openapi, "Spec")
    base = {"input": {"shape": [3, 8, 8]}, "layers": []}
    for layer in (
        {"name": "c", "type": "conv2d", "in_channels": 3, "out_channels": 4},  # no kernel_size
        {"name": "c", "type": "conv2d", "in_channels": 3, "out_channels": 4, "kernel_size": 3,
         "colour": "red"},  # an unknown field
        {"name": "c", "type": "conv9d"},
        {"name": "p", "type": "maxpool2d", "kernel_size": [2, 2, 2]},
    ):  # fmt: skip
        with pytest.raises(jsonschema.ValidationError):
            check.validate({**base, "layers": [layer]})


def test_every_field_of_a_spec_is_documented(openapi):
    """The top-level, input and preprocess fields the server accepts (its OpenAPI schemas) each
    have a row in docs/spec.md, and the interpolations listed are the ones it accepts."""
    text = markdown()
    first_cells = {line.split("|")[1] for line in text.splitlines() if line.startswith("| `")}
    schemas = openapi["components"]["schemas"]
    for component, prefix in (("Spec", ""), ("Input", "input."), ("Preprocess", "")):
        for field in schemas[component]["properties"]:
            if component == "Spec" and field == "input":
                continue
            assert any(f"`{prefix}{field}`" in cell for cell in first_cells), (component, field)
    for interpolation in schemas["Preprocess"]["properties"]["interpolation"]["enum"]:
        assert f"`{interpolation}`" in text
