"""Space/time metrics against independent computations and published distances."""

from __future__ import annotations

import numpy as np
import pytest

from needle.errors import InputError
from needle.spacetime.metrics import (
    EARTH_RADIUS_KM,
    great_circle_errors,
    haversine_km,
    proximity_error,
    proximity_error_bruteforce,
    sphere_r2,
)

# (latitude, longitude) in degrees.
LONDON = (51.5074, -0.1278)
PARIS = (48.8566, 2.3522)
NEW_YORK = (40.7128, -74.0060)
LOS_ANGELES = (34.0522, -118.2437)
SYDNEY = (-33.8688, 151.2093)


def _arccos_distance(a, b):
    """Great circle by the spherical law of cosines on unit vectors: another formula than the haversine."""
    def unit(lat, lon):
        phi, lam = np.radians(lat), np.radians(lon)
        return np.array([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)])
    return EARTH_RADIUS_KM * np.arccos(np.clip(unit(*a) @ unit(*b), -1, 1))


@pytest.mark.parametrize("a, b, km", [(LONDON, PARIS, 343.5), (NEW_YORK, LOS_ANGELES, 3935.7), (LONDON, SYDNEY, 16994.0)])
def test_haversine_matches_published_distances(a, b, km):
    # Published great-circle distances (mean radius); a latitude/longitude swap is off by hundreds of km.
    assert haversine_km(*a, *b) == pytest.approx(km, abs=2.0)
    assert haversine_km(*a, *b) == pytest.approx(_arccos_distance(a, b), rel=1e-9)


def test_swapping_latitude_and_longitude_changes_the_answer():
    # The check above is sensitive to the order: a swapped call lands far from the published value.
    swapped = haversine_km(LONDON[1], LONDON[0], PARIS[1], PARIS[0])
    assert abs(swapped - 343.5) > 50
    swapped = haversine_km(NEW_YORK[1], NEW_YORK[0], LOS_ANGELES[1], LOS_ANGELES[0])
    assert abs(swapped - 3935.7) > 500


def test_great_circle_errors_refuse_swapped_true_coordinates():
    # Sydney's longitude (151°) cannot be a latitude: a swapped pair is refused, not silently measured.
    with pytest.raises(InputError, match="swapped"):
        great_circle_errors([SYDNEY[1]], [SYDNEY[0]], [0.0], [0.0])
    assert great_circle_errors([SYDNEY[0]], [SYDNEY[1]], [LONDON[0]], [LONDON[1]])[0] == pytest.approx(16994.0, abs=2)


def test_antimeridian_is_short():
    # 179.9°E and 179.9°W are 22 km apart at the equator, not 40,000 km.
    assert haversine_km(0.0, 179.9, 0.0, -179.9) == pytest.approx(2 * np.pi * EARTH_RADIUS_KM * 0.2 / 360, rel=1e-9)
    assert sphere_r2([0.0, 10.0, -10.0], [179.9, 0.0, 90.0], [0.0, 10.0, -10.0], [-179.9, 0.0, 90.0]) > 0.999


def test_sphere_r2_against_numpy():
    rng = np.random.default_rng(0)
    lat, lon = rng.uniform(-60, 60, 50), rng.uniform(-170, 170, 50)
    plat, plon = lat + rng.normal(0, 5, 50), lon + rng.normal(0, 5, 50)
    def xyz(a, o):
        a, o = np.radians(a), np.radians(o)
        return np.c_[np.cos(a) * np.cos(o), np.cos(a) * np.sin(o), np.sin(a)]
    t, p = xyz(lat, lon), xyz(plat, plon)
    expected = 1 - ((p - t) ** 2).sum() / ((t - t.mean(0)) ** 2).sum()
    assert sphere_r2(lat, lon, plat, plon) == pytest.approx(expected, rel=1e-12)
    assert sphere_r2(lat, lon, lat, lon) == pytest.approx(1.0)


@pytest.mark.parametrize("n", [2, 7, 150, 333])
def test_proximity_error_space_equals_bruteforce(n):
    rng = np.random.default_rng(n)
    true = np.c_[rng.uniform(-80, 80, n), rng.uniform(-180, 180, n)]
    pred = true + rng.normal(0, 20, (n, 2))
    pred[:, 0] = np.clip(pred[:, 0], -90, 90)
    fast = proximity_error(true, pred, kind="space")
    np.testing.assert_array_equal(fast, proximity_error_bruteforce(true, pred, kind="space"))
    # The definition by hand for one entity.
    i = n // 2
    d = [haversine_km(*true[i], *pred[j]) for j in range(n)]
    assert fast[i] == sum(d[j] < d[i] for j in range(n) if j != i) / (n - 1)


@pytest.mark.parametrize("n", [3, 100, 501])
def test_proximity_error_time_equals_bruteforce(n):
    rng = np.random.default_rng(n)
    true = rng.uniform(1000, 2000, n)
    pred = np.round(true + rng.normal(0, 100, n))  # rounded: ties between predictions happen
    np.testing.assert_array_equal(proximity_error(true, pred, kind="time"),
                                  proximity_error_bruteforce(true, pred, kind="time"))


def test_proximity_error_extremes():
    true = np.c_[np.linspace(-60, 60, 20), np.linspace(-150, 150, 20)]
    assert proximity_error(true, true).max() == 0.0  # perfect predictions
    rng = np.random.default_rng(1)
    shuffled = proximity_error(true, true[rng.permutation(20)]).mean()
    assert 0.2 < shuffled < 0.8  # unrelated predictions are near chance (0.5)


def test_bad_inputs_are_one_line_errors():
    with pytest.raises(InputError, match="swapped"):
        great_circle_errors([120.0], [40.0], [0.0], [0.0])
    with pytest.raises(InputError, match="shape"):
        proximity_error(np.zeros((3, 3)), np.zeros((3, 3)))
    with pytest.raises(InputError, match="kind"):
        proximity_error(np.zeros(3), np.zeros(3), kind="distance")
