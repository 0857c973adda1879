"""Rotation conversions in numpy, batched over any leading dimensions.

Quaternions are (w, x, y, z) with w the scalar part. Rotation matrices act on column vectors (v' = R v).
The 6D representation (Zhou et al. 2019, "On the continuity of rotation representations") is the first two
columns of the matrix, concatenated: (r00, r10, r20, r01, r11, r21).
"""
import numpy as np

_EPS = 1e-12


def quat_identity(shape: tuple[int, ...] = ()) -> np.ndarray:
    q = np.zeros(tuple(shape) + (4,))
    q[..., 0] = 1.0
    return q


def quat_normalize(q: np.ndarray) -> np.ndarray:
    return q / np.maximum(np.linalg.norm(q, axis=-1, keepdims=True), _EPS)


def quat_conjugate(q: np.ndarray) -> np.ndarray:
    return q * np.array([1.0, -1.0, -1.0, -1.0])


def quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # Component arithmetic into one output array: the live path multiplies small batches many times a frame,
    # where moveaxis/stack would cost more than the products.
    a, b = np.asarray(a), np.asarray(b)
    aw, ax, ay, az = a[..., 0], a[..., 1], a[..., 2], a[..., 3]
    bw, bx, by, bz = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    out = np.empty(np.broadcast_shapes(a.shape, b.shape), np.result_type(a, b))
    out[..., 0] = aw * bw - ax * bx - ay * by - az * bz
    out[..., 1] = aw * bx + ax * bw + ay * bz - az * by
    out[..., 2] = aw * by - ax * bz + ay * bw + az * bx
    out[..., 3] = aw * bz + ax * by - ay * bx + az * bw
    return out


def cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The cross product of vectors (..., 3), broadcast: `np.cross` without its per-call overhead."""
    a, b = np.asarray(a), np.asarray(b)
    ax, ay, az = a[..., 0], a[..., 1], a[..., 2]
    bx, by, bz = b[..., 0], b[..., 1], b[..., 2]
    out = np.empty(np.broadcast_shapes(a.shape, b.shape), np.result_type(a, b))
    out[..., 0] = ay * bz - az * by
    out[..., 1] = az * bx - ax * bz
    out[..., 2] = ax * by - ay * bx
    return out


def quat_apply(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate vectors v (..., 3) by quaternions q (..., 4)."""
    w = q[..., :1]
    xyz = q[..., 1:]
    t = 2.0 * cross(xyz, v)
    return v + w * t + cross(xyz, t)


def quat_from_axis_angle(aa: np.ndarray) -> np.ndarray:
    angle = np.linalg.norm(aa, axis=-1, keepdims=True)
    half = 0.5 * angle
    # sin(x/2)/x tends to 1/2 as x -> 0; the series avoids 0/0 for the identity.
    small = angle < 1e-8
    scale = np.where(small, 0.5 - angle ** 2 / 48.0, np.sin(half) / np.where(small, 1.0, angle))
    return np.concatenate([np.cos(half), aa * scale], axis=-1)


def quat_to_axis_angle(q: np.ndarray) -> np.ndarray:
    q = quat_normalize(q)
    q = np.where(q[..., :1] < 0, -q, q)  # shortest rotation: angle in [0, pi]
    sin_half = np.linalg.norm(q[..., 1:], axis=-1, keepdims=True)
    angle = 2.0 * np.arctan2(sin_half, q[..., :1])
    small = sin_half < 1e-8
    scale = np.where(small, 2.0, angle / np.where(small, 1.0, sin_half))
    return q[..., 1:] * scale


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    w, x, y, z = np.moveaxis(quat_normalize(q), -1, 0)
    m = np.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], axis=-1)
    return m.reshape(q.shape[:-1] + (3, 3))


def quat_from_matrix(m: np.ndarray) -> np.ndarray:
    """Robust conversion (Shepperd's method): picks the largest of w, x, y, z to divide by."""
    m = np.asarray(m, dtype=np.float64)
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    candidates = np.stack([
        np.stack([1 + m00 + m11 + m22, m21 - m12, m02 - m20, m10 - m01], -1),
        np.stack([m21 - m12, 1 + m00 - m11 - m22, m01 + m10, m02 + m20], -1),
        np.stack([m02 - m20, m01 + m10, 1 - m00 + m11 - m22, m12 + m21], -1),
        np.stack([m10 - m01, m02 + m20, m12 + m21, 1 - m00 - m11 + m22], -1),
    ], axis=-2)  # (..., 4, 4): row k is 4*q_k*q scaled; the row with the largest diagonal is best conditioned
    diag = np.stack([candidates[..., k, k] for k in range(4)], -1)
    best = np.argmax(diag, axis=-1)
    q = np.take_along_axis(candidates, best[..., None, None].repeat(4, -1), axis=-2)[..., 0, :]
    q = quat_normalize(q)
    return np.where(q[..., :1] < 0, -q, q)


def matrix_to_6d(m: np.ndarray) -> np.ndarray:
    return np.concatenate([m[..., :, 0], m[..., :, 1]], axis=-1)


def matrix_from_6d(d6: np.ndarray) -> np.ndarray:
    """Gram-Schmidt: any 6 numbers map to a valid rotation, which is why networks predict this form."""
    a, b = d6[..., :3], d6[..., 3:]
    x = a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), _EPS)
    b = b - np.sum(x * b, axis=-1, keepdims=True) * x
    y = b / np.maximum(np.linalg.norm(b, axis=-1, keepdims=True), _EPS)
    z = np.cross(x, y)
    return np.stack([x, y, z], axis=-1)


def quat_to_6d(q: np.ndarray) -> np.ndarray:
    return matrix_to_6d(quat_to_matrix(q))


def quat_from_6d(d6: np.ndarray) -> np.ndarray:
    return quat_from_matrix(matrix_from_6d(d6))


def quat_between(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Shortest-arc rotation taking direction u onto direction v."""
    u = u / np.maximum(np.linalg.norm(u, axis=-1, keepdims=True), _EPS)
    v = v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), _EPS)
    dot = np.sum(u * v, axis=-1, keepdims=True)
    axis = np.cross(u, v)
    # Opposite directions: any axis perpendicular to u will do.
    opposite = (dot[..., 0] < -1 + 1e-9)
    if np.any(opposite):
        helper = np.where(np.abs(u[..., :1]) < 0.9, np.array([1.0, 0, 0]), np.array([0, 1.0, 0]))
        perp = np.cross(u, helper)
        perp /= np.maximum(np.linalg.norm(perp, axis=-1, keepdims=True), _EPS)
        axis = np.where(opposite[..., None], perp, axis)
        dot = np.where(opposite[..., None], -1.0, dot)
    return quat_normalize(np.concatenate([1.0 + dot, axis], axis=-1))  # opposite: dot = -1, so w = 0


def quat_make_continuous(q: np.ndarray, axis: int = 0) -> np.ndarray:
    """Flip signs along a time axis so consecutive quaternions lie in the same hemisphere (q and -q are the
    same rotation; interpolation and learning want the nearer one)."""
    q = np.moveaxis(np.array(q, dtype=np.float64), axis, 0)
    for t in range(1, q.shape[0]):
        flip = np.sum(q[t] * q[t - 1], axis=-1) < 0
        q[t][flip] *= -1
    return np.moveaxis(q, 0, axis)


def quat_limit_steps(q: np.ndarray, reference: np.ndarray, limit: float, previous: np.ndarray | None = None,
                     reference_previous: np.ndarray | None = None) -> np.ndarray:
    """(T, ..., 4) rotations `q` with every frame-to-frame turn at most as large as `reference`'s own turn over the
    same step, or `limit` radians if that is more: a frame that turns further is slerped back towards the frame
    before. Frame 0 is compared with `previous` (and `reference_previous`); without them it is kept."""
    out = np.array(q, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if previous is None or reference_previous is None:
        previous, reference_previous = out[0], reference[0]
    allowed = np.maximum(_turn_angle(reference, np.concatenate([reference_previous[None], reference[:-1]])), limit)
    if (_turn_angle(out, np.concatenate([previous[None], out[:-1]])) <= allowed).all():
        return out  # the usual case, at once: nothing turns too fast
    for t in range(len(out)):
        allowed = np.maximum(_turn_angle(reference[t], reference_previous), limit)
        turned = _turn_angle(out[t], previous)
        over = turned > allowed
        if over.any():
            out[t][over] = quat_slerp(previous[over], out[t][over], allowed[over] / turned[over])
        previous, reference_previous = out[t], reference[t]
    return out


def _turn_angle(a, b):
    return 2 * np.arccos(np.minimum(np.abs(np.sum(a * b, axis=-1)), 1.0))


def quat_slerp(a: np.ndarray, b: np.ndarray, t: float | np.ndarray) -> np.ndarray:
    """Spherical interpolation from a to b; t broadcasts against the leading dimensions."""
    t = np.asarray(t, dtype=np.float64)[..., None]
    dot = np.sum(a * b, axis=-1, keepdims=True)
    b = np.where(dot < 0, -b, b)
    dot = np.abs(dot)
    theta = np.arccos(np.clip(dot, -1.0, 1.0))
    sin_theta = np.sin(theta)
    near = sin_theta < 1e-6  # nearly equal: linear interpolation is exact enough and stable
    safe = np.where(near, 1.0, sin_theta)
    wa = np.where(near, 1.0 - t, np.sin((1.0 - t) * theta) / safe)
    wb = np.where(near, t, np.sin(t * theta) / safe)
    return quat_normalize(wa * a + wb * b)


_AXES = {"x": np.array([1.0, 0, 0]), "y": np.array([0, 1.0, 0]), "z": np.array([0, 0, 1.0])}


def quat_from_euler(angles_deg: np.ndarray, order: str) -> np.ndarray:
    """Intrinsic Euler angles in degrees, applied in `order` (e.g. "zxy", as BVH channel order lists them):
    R = R_order[0] @ R_order[1] @ R_order[2]."""
    angles = np.radians(np.asarray(angles_deg, dtype=np.float64))
    q = quat_identity(angles.shape[:-1])
    for i, name in enumerate(order.lower()):
        q = quat_multiply(q, quat_from_axis_angle(angles[..., i:i + 1] * _AXES[name]))
    return q


def quat_to_euler(q: np.ndarray, order: str) -> np.ndarray:
    """Inverse of quat_from_euler for Tait-Bryan orders (all three axes distinct); degrees."""
    order = order.lower()
    m = quat_to_matrix(q)
    i, j, k = ("xyz".index(c) for c in order)
    # Sign of the permutation decides the signs in the closed form.
    sign = 1.0 if (i, j, k) in ((0, 1, 2), (1, 2, 0), (2, 0, 1)) else -1.0
    second = np.arcsin(np.clip(sign * m[..., i, k], -1.0, 1.0))
    first = np.arctan2(-sign * m[..., j, k], m[..., k, k])
    third = np.arctan2(-sign * m[..., i, j], m[..., i, i])
    # Gimbal lock: the first and third axes coincide; put all of it into the first angle.
    locked = np.abs(m[..., i, k]) > 1 - 1e-9
    first = np.where(locked, np.arctan2(sign * m[..., k, j], m[..., j, j]), first)
    third = np.where(locked, 0.0, third)
    return np.degrees(np.stack([first, second, third], axis=-1))
