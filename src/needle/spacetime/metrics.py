"""Metrics of space and time probes (§4.2.3): great-circle error, R² on the sphere, proximity error.

Coordinates are always **(latitude, longitude) in degrees, in that order**:
``latitude`` in [-90, 90] (north positive), ``longitude`` in [-180, 180] (east
positive). True coordinates outside those ranges are refused (a swapped pair
usually has a |latitude| above 90 somewhere); predicted latitudes are clipped
to [-90, 90] first, since a linear probe can overshoot a pole.

- :func:`haversine_km` — great-circle distance on a sphere of radius
  :data:`EARTH_RADIUS_KM`.
- :func:`sphere_r2` — R² of positions projected onto the unit sphere
  (x, y, z), pooled over the three axes: unlike an R² per coordinate it does
  not count the 359° "error" of a prediction just across the antimeridian.
- :func:`proximity_error` — for each entity, the fraction of the *other*
  entities whose prediction lies strictly closer to its true position than
  its own prediction does (0 is perfect, 0.5 is chance). It is computed in
  blocks of rows (great-circle order via dot products of unit vectors: one
  matrix product per block) or, for times, by sorting (O(n log n)): memory is
  O(n · block), never the n × n matrix the original code built (6 GB at 40k
  places).
"""

from __future__ import annotations

import numpy as np

from needle.errors import InputError

__all__ = ["EARTH_RADIUS_KM", "haversine_km", "unit_vectors", "sphere_r2", "great_circle_errors",
           "proximity_error", "proximity_error_bruteforce"]

#: Mean Earth radius (IUGG), kilometres.
EARTH_RADIUS_KM = 6371.0088
# Rows of the block of the proximity computation: block × n float64 stays near 32 MB at n = 40,000.
_BLOCK = 100


def _coordinates(latitude, longitude, what: str, *, check: bool) -> tuple[np.ndarray, np.ndarray]:
    lat = np.asarray(latitude, dtype=np.float64)
    lon = np.asarray(longitude, dtype=np.float64)
    if lat.shape != lon.shape:
        raise InputError(f"{what}: latitude has shape {lat.shape} but longitude {lon.shape}.")
    if not (np.all(np.isfinite(lat)) and np.all(np.isfinite(lon))):
        raise InputError(f"{what}: coordinates must be finite.")
    if check:
        if np.any(np.abs(lat) > 90):
            raise InputError(f"{what}: a latitude is outside [-90, 90] (max |lat| {np.abs(lat).max():.1f}); "
                             "are latitude and longitude swapped? Pass (latitude, longitude) in degrees.")
        if np.any(np.abs(lon) > 360):
            raise InputError(f"{what}: a longitude is outside [-360, 360]; pass degrees, not radians or metres.")
    else:
        lat = np.clip(lat, -90.0, 90.0)
    return lat, lon


def haversine_km(lat1, lon1, lat2, lon2) -> np.ndarray:
    """Great-circle distance in km between (lat1, lon1) and (lat2, lon2), degrees, broadcast.

    ``2 R asin(sqrt(sin²(Δφ/2) + cos φ1 cos φ2 sin²(Δλ/2)))`` with φ the latitudes
    and λ the longitudes.
    """
    phi1, phi2 = np.radians(lat1), np.radians(lat2)
    dphi = phi2 - phi1
    dlam = np.radians(np.asarray(lon2, np.float64) - np.asarray(lon1, np.float64))
    a = np.sin(dphi / 2) ** 2 + np.cos(phi1) * np.cos(phi2) * np.sin(dlam / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def unit_vectors(latitude, longitude) -> np.ndarray:
    """Points on the unit sphere: ndarray of shape (n, 3), ``(cos φ cos λ, cos φ sin λ, sin φ)``."""
    phi, lam = np.radians(latitude), np.radians(longitude)
    return np.stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)], axis=-1)


def great_circle_errors(true_lat, true_lon, pred_lat, pred_lon) -> np.ndarray:
    """Great-circle error of each prediction in km: ndarray of shape (n,)."""
    t_lat, t_lon = _coordinates(true_lat, true_lon, "true coordinates", check=True)
    p_lat, p_lon = _coordinates(pred_lat, pred_lon, "predicted coordinates", check=False)
    return haversine_km(t_lat, t_lon, p_lat, p_lon)


def sphere_r2(true_lat, true_lon, pred_lat, pred_lon) -> float:
    """R² of the predicted positions on the unit sphere: 1 − Σ‖p − t‖² / Σ‖t − t̄‖² over (x, y, z)."""
    t_lat, t_lon = _coordinates(true_lat, true_lon, "true coordinates", check=True)
    p_lat, p_lon = _coordinates(pred_lat, pred_lon, "predicted coordinates", check=False)
    t, p = unit_vectors(t_lat, t_lon), unit_vectors(p_lat, p_lon)
    ss_tot = float(np.sum((t - t.mean(axis=0)) ** 2))
    return float("nan") if ss_tot == 0 else 1.0 - float(np.sum((p - t) ** 2)) / ss_tot


def proximity_error(true, pred, *, kind: str = "space") -> np.ndarray:
    """Per-entity proximity error, without the n × n matrix.

    Parameters
    ----------
    true, pred : ndarray of shape (n, 2) (latitude, longitude in degrees) for ``kind="space"``,
        or of shape (n,) for ``kind="time"``
    kind : {"space", "time"}
        Great-circle distance, or absolute difference.

    Returns
    -------
    ndarray of shape (n,)
        ``#{j ≠ i : d(pred_j, true_i) < d(pred_i, true_i)} / (n − 1)``.
    """
    true, pred, n = _proximity_inputs(true, pred, kind)
    if kind == "time":
        order = np.sort(pred)
        radius = np.abs(pred - true)
        # Strictly closer: pred_j in the open interval (true_i − r_i, true_i + r_i); pred_i itself sits on its edge.
        closer = np.searchsorted(order, true + radius, "left") - np.searchsorted(order, true - radius, "right")
        return np.maximum(closer, 0) / (n - 1)
    t = unit_vectors(*_coordinates(true[:, 0], true[:, 1], "true coordinates", check=True))
    p = unit_vectors(*_coordinates(pred[:, 0], pred[:, 1], "predicted coordinates", check=False))
    # On the sphere a larger dot product is a shorter great circle, so "closer" is a comparison of dot products.
    own = np.einsum("ij,ij->i", t, p)
    counts = np.empty(n, np.int64)
    for start in range(0, n, _BLOCK):
        stop = min(start + _BLOCK, n)
        dots = t[start:stop] @ p.T  # (block, n)
        closer = dots > own[start:stop, None]
        closer[np.arange(stop - start), np.arange(start, stop)] = False
        counts[start:stop] = closer.sum(axis=1)
    return counts / (n - 1)


def proximity_error_bruteforce(true, pred, *, kind: str = "space") -> np.ndarray:
    """The definition, with the full n × n distance matrix (for tests and the benchmark only)."""
    true, pred, n = _proximity_inputs(true, pred, kind)
    if kind == "time":
        distance = np.abs(pred[None, :] - true[:, None])  # [i, j] = d(pred_j, true_i)
    else:
        lat_t, lon_t = _coordinates(true[:, 0], true[:, 1], "true coordinates", check=True)
        lat_p, lon_p = _coordinates(pred[:, 0], pred[:, 1], "predicted coordinates", check=False)
        distance = haversine_km(lat_t[:, None], lon_t[:, None], lat_p[None, :], lon_p[None, :])
    own = np.diag(distance)
    closer = distance < own[:, None]
    np.fill_diagonal(closer, False)
    return closer.sum(axis=1) / (n - 1)


def _proximity_inputs(true, pred, kind: str):
    if kind not in ("space", "time"):
        raise InputError(f"kind must be 'space' or 'time', not {kind!r}.")
    true, pred = np.asarray(true, np.float64), np.asarray(pred, np.float64)
    if true.shape != pred.shape:
        raise InputError(f"true has shape {true.shape} but pred {pred.shape}.")
    if kind == "space" and (true.ndim != 2 or true.shape[1] != 2):
        raise InputError(f"space coordinates must have shape (n, 2): (latitude, longitude); got {true.shape}.")
    if kind == "time" and true.ndim != 1:
        raise InputError(f"times must have shape (n,); got {true.shape}.")
    n = true.shape[0]
    if n < 2:
        raise InputError("the proximity error needs at least two entities.")
    if not (np.all(np.isfinite(true)) and np.all(np.isfinite(pred))):
        raise InputError("the proximity error needs finite values.")
    return true, pred, n
