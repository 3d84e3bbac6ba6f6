"""The shipped catalog and profiles load; bad files fail with the file, the field and the value."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from prescale.catalog import (
    KINDS,
    CatalogError,
    check_profile,
    list_profiles,
    load_catalog,
    load_profile,
    parse_catalog,
    parse_profile,
    resolve_profile,
)

REPO = Path(__file__).resolve().parents[2]
CATALOG = REPO / "infra" / "catalog.yaml"
APPS = REPO / "infra" / "apps"


def test_shipped_catalog_has_every_kind_and_at_least_twelve_types():
    catalog = load_catalog(CATALOG)
    assert len(catalog) >= 12
    assert {t.kind for t in catalog} == set(KINDS)
    assert "aws" in catalog.source.lower()
    for t in catalog:
        assert t.pool.labels["node.kubernetes.io/instance-type"] == t.name
        assert t.pool.labels["prescale.io/kind"] == t.kind
        if t.kind in ("gpu-vm", "fpga", "bare-metal"):
            assert t.pool.taints, f"{t.name} should be tainted"


def test_lead_times_follow_the_kinds():
    catalog = load_catalog(CATALOG)
    slowest = {k: max(t.lead_time_seconds for t in catalog.of_kind(k)) for k in KINDS}
    fastest = {k: min(t.lead_time_seconds for t in catalog.of_kind(k)) for k in KINDS}
    assert slowest["cpu-vm"] <= 120 < fastest["gpu-vm"]
    assert slowest["gpu-vm"] < fastest["fpga"] and fastest["bare-metal"] >= 900


@pytest.mark.parametrize("app", ["web", "inference", "transcoder", "analytics"])
def test_shipped_profiles_load_and_match_the_catalog(app):
    profile = resolve_profile(app, APPS)
    check_profile(profile, load_catalog(CATALOG))
    assert profile.name == app and profile.example_demand is not None


def test_profile_by_name_for_an_app_without_its_own_file():
    profile = resolve_profile("shop", APPS, profile="web")
    assert profile.name == "shop"
    assert profile.metrics == resolve_profile("web", APPS).metrics


def test_missing_profile_names_the_choices():
    with pytest.raises(CatalogError, match=r"no profile 'shop'.*available: analytics, inference.*--profile"):
        resolve_profile("shop", APPS)


def test_served_is_derived_from_tags_or_given():
    catalog = load_catalog(CATALOG)
    web, transcoder = resolve_profile("web", APPS), resolve_profile("transcoder", APPS)
    c7g = catalog["c7g.2xlarge"]
    assert web.served(c7g) == pytest.approx((60 * 8 * 100 / 45, 2000 * 16))
    assert transcoder.served(catalog["vt1.3xlarge"]) == (16.0,)
    assert transcoder.incompatibility(catalog["f2.6xlarge"]).startswith("incompatible: no bitstream")
    assert web.incompatibility(catalog["g5.xlarge"]).startswith("incompatible: app 'web' runs on cpu-vm")


def _catalog_data() -> dict:
    return yaml.safe_load(CATALOG.read_text())


BAD_TYPES = [
    pytest.param(
        {"price": {"on_demand": 1.0, "spot": 2.0}}, "price: Value error, spot price 2.0 exceeds", id="spot-above"
    ),
    pytest.param({"kind": "gpu"}, "kind: Input should be 'cpu-vm'", id="unknown-kind"),
    pytest.param({"quota": -1}, "quota: Input should be greater than or equal to 0 (got -1)", id="negative-quota"),
    pytest.param({"lead_time_seconds": "soon"}, "lead_time_seconds: Input should be a valid number", id="lead-time"),
    pytest.param(
        {"capacity": {"vcpu": 4, "memory_gib": 16, "gpus": 1}}, "cpu-vm cannot have accelerators", id="cpu-with-gpu"
    ),
    pytest.param({"colour": "blue"}, "colour: Extra inputs are not permitted", id="unknown-field"),
    pytest.param({"pool": {"name": "Big_Pool"}}, "pool.name: Value error, must be a DNS-1123 label", id="pool-name"),
]


@pytest.mark.parametrize(("patch", "message"), BAD_TYPES)
def test_bad_catalog_names_the_type_field_and_value(patch, message):
    data = _catalog_data()
    data["types"][0].update(patch)
    with pytest.raises(CatalogError) as err:
        parse_catalog(data, source="catalog.yaml")
    text = str(err.value)
    assert text.startswith("catalog.yaml: ")
    assert "types[0] (m7i.xlarge)" in text and message in text, text


def test_a_default_pool_name_is_a_kubernetes_name_whatever_the_type_name():
    data = _catalog_data()
    data["types"][0]["name"] = "Standard_D4s_v5"
    data["types"][0].pop("pool", None)
    rtype = parse_catalog(data).types[0]
    assert rtype.pool.name == "prescale-standard-d4s-v5"
    assert rtype.pool.labels["node.kubernetes.io/instance-type"] == "Standard_D4s_v5"


def test_duplicate_type_names_are_rejected():
    data = _catalog_data()
    data["types"].append(dict(data["types"][0]))
    with pytest.raises(CatalogError, match="duplicate type name 'm7i.xlarge'"):
        parse_catalog(data)


BAD_PROFILES = [
    pytest.param({"kinds": ["gpu"]}, "kinds[0]: Input should be 'cpu-vm'", id="unknown-kind"),
    pytest.param({"serves": {"c7g.2xlarge": {"rps": 1}}}, "unknown metric(s) ['rps']", id="unknown-metric"),
    pytest.param({"min_nodes": 5, "max_nodes": 2}, "max_nodes (2) must be >= min_nodes (5)", id="min-above-max"),
    pytest.param({"workload_class": "io"}, "workload_class: Input should be 'compute'", id="workload-class"),
    pytest.param({"kinds": ["fpga"]}, "fpga_bitstreams is empty", id="fpga-without-bitstream"),
    pytest.param({"min_nodes": "many"}, "min_nodes: Input should be a valid integer, unable to parse string as an "
                 "integer (got 'many')", id="wrong-type"),
    pytest.param({"metrics": 5}, "metrics: Input should be a valid tuple (got 5)", id="metrics-not-a-list"),
    pytest.param({"max_nodes": 10**30}, "max_nodes: Input should be less than or equal to 1000000", id="huge-count"),
    pytest.param({"example_demand": {"base": {"requests_per_second": -1, "connections": 1},
                                     "peak": {"requests_per_second": 1, "connections": 1}}},
                 "example_demand.base.requests_per_second: Input should be greater than or equal to 0",
                 id="negative-example"),
]


@pytest.mark.parametrize(("patch", "message"), BAD_PROFILES)
def test_bad_profile_names_the_field(patch, message):
    data = yaml.safe_load((APPS / "web.yaml").read_text())
    data.update(patch)
    with pytest.raises(CatalogError) as err:
        parse_profile(data, source="web.yaml")
    assert message in str(err.value), str(err.value)


def test_profile_serving_an_unknown_type_fails_the_cross_check(tmp_path):
    data = yaml.safe_load((APPS / "web.yaml").read_text())
    data["serves"] = {"c9.large": {"requests_per_second": 10}}
    (tmp_path / "web.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(CatalogError, match=r"serves names unknown type\(s\) \['c9.large'\]"):
        check_profile(load_profile(tmp_path / "web.yaml"), load_catalog(CATALOG))


def test_unreadable_files_are_catalog_errors(tmp_path):
    (tmp_path / "bad.yaml").write_text("types: [\n")
    with pytest.raises(CatalogError, match="not valid YAML"):
        load_catalog(tmp_path / "bad.yaml")
    with pytest.raises(CatalogError, match="file not found"):
        load_catalog(tmp_path / "absent.yaml")
    assert list_profiles(tmp_path / "absent") == []


def _reachable_profile(tmp_path: Path) -> Path:
    """A valid profile outside the profiles folder, as a traversal would reach it."""
    outside = tmp_path / "x.yaml"
    outside.write_text((APPS / "web.yaml").read_text())
    (tmp_path / "apps").mkdir()
    (tmp_path / "apps" / "web.yaml").write_text((APPS / "web.yaml").read_text())
    return outside


PROFILE_NAMES = [
    pytest.param("shop", "../x", "profile '../x' is not a valid", id="profile-traversal"),
    pytest.param("shop", "/tmp/x", "profile '/tmp/x' is not a valid", id="profile-absolute-path"),
    pytest.param("../x", None, "app '../x' is not a valid", id="app-traversal"),
    pytest.param("Web", None, "app 'Web' is not a valid", id="app-upper-case"),
    pytest.param("a" * 300, None, "(300 characters) is not a valid", id="app-too-long"),
]


@pytest.mark.parametrize(("app", "profile", "message"), PROFILE_NAMES)
def test_profiles_resolve_only_by_valid_name(tmp_path, app, profile, message):
    _reachable_profile(tmp_path)
    with pytest.raises(CatalogError, match=re.escape(message)):
        resolve_profile(app, tmp_path / "apps", profile)


def test_a_link_out_of_the_profiles_folder_is_not_followed(tmp_path):
    outside = _reachable_profile(tmp_path)
    (tmp_path / "apps" / "x.yaml").symlink_to(outside)
    with pytest.raises(CatalogError, match="outside the profiles folder"):
        resolve_profile("shop", tmp_path / "apps", "x")
    assert resolve_profile("shop", tmp_path / "apps", "web").name == "shop"
