import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.exposition import generate_latest

from daemon.metrics import BulkHistogram

BUCKETS = (0.005, 0.1, 1.0, 10.0)


def test_bulk_histogram_exposes_what_prometheus_client_would() -> None:
    # On a bound, between bounds, beyond the last one, and zero: one call versus one call per value.
    values = [0.0, 0.005, 0.0051, 0.1, 0.5, 1.0, 9.99, 10.0, 10.01, 1e6]
    reference_registry, bulk_registry = CollectorRegistry(), CollectorRegistry()
    reference = Histogram("lat_seconds", "latency", buckets=BUCKETS, registry=reference_registry)
    bulk = BulkHistogram("lat_seconds", "latency", BUCKETS, bulk_registry)
    for value in values:
        reference.observe(value)
    bulk.observe_many(np.array(values[:6]))
    bulk.observe_many(np.array(values[6:]))

    def samples(registry: CollectorRegistry) -> list[tuple[str, list[tuple[str, str]], float]]:
        return sorted(
            (s.name, sorted(s.labels.items()), s.value)
            for m in registry.collect()
            for s in m.samples
            if not s.name.endswith("_created")
        )

    assert samples(bulk_registry) == samples(reference_registry)
    assert b'lat_seconds_bucket{le="0.005"} 2.0' in generate_latest(bulk_registry)


def test_bulk_histogram_single_observation_and_empty_wave() -> None:
    registry = CollectorRegistry()
    bulk = BulkHistogram("lat_seconds", "latency", BUCKETS, registry)
    bulk.observe_many(np.array([], dtype=np.float64))
    bulk.observe(0.2)
    assert registry.get_sample_value("lat_seconds_count") == 1
    assert registry.get_sample_value("lat_seconds_bucket", {"le": "0.1"}) == 0
    assert registry.get_sample_value("lat_seconds_bucket", {"le": "1.0"}) == 1
    assert registry.get_sample_value("lat_seconds_sum") == 0.2


def test_bulk_histogram_name_is_claimed_in_its_registry() -> None:
    registry = CollectorRegistry(auto_describe=False)
    BulkHistogram("lat_seconds", "latency", BUCKETS, registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Histogram("lat_seconds", "again", registry=registry)
