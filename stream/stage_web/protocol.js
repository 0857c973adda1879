// The stage's binary messages (written by onbeat.stream.stage: see its docstring for the layout).
// Little-endian throughout; the float blocks start at byte 24, so they are read in place as Float32Array
// (every browser runs on a little-endian machine).
export const FRAME_VERSION = 1;
export const KIND_POSE = 1;
export const KIND_RECORDING = 2;
export const HEADER_BYTES = 24;
export const JOINTS = 24;
export const FLOATS_PER_DANCER = 3 + JOINTS * 4; // root xyz, then 24 quaternions (w, x, y, z)

function header(buffer, kind) {
  const view = new DataView(buffer);
  const version = view.getUint8(0);
  if (version !== FRAME_VERSION || view.getUint8(1) !== kind) {
    throw new Error(`unsupported stage message (version ${version}, kind ${view.getUint8(1)})`);
  }
  return view;
}

// One output frame: {index, time (s on the engine's output clock), sent (Unix s), dancers, floats}.
export function decodePose(buffer) {
  const view = header(buffer, KIND_POSE);
  const dancers = view.getUint16(2, true);
  return {
    dancers,
    index: view.getUint32(4, true),
    time: view.getFloat64(8, true),
    sent: view.getFloat64(16, true),
    floats: new Float32Array(buffer, HEADER_BYTES, dancers * FLOATS_PER_DANCER),
  };
}

// A whole recording: {dancers, frames, fps, floats} with frame f, dancer d at (f * dancers + d) * FLOATS_PER_DANCER.
export function decodeRecording(buffer) {
  const view = header(buffer, KIND_RECORDING);
  const dancers = view.getUint16(2, true);
  const frames = view.getUint32(4, true);
  return {
    dancers, frames,
    fps: view.getFloat64(8, true),
    floats: new Float32Array(buffer, HEADER_BYTES, frames * dancers * FLOATS_PER_DANCER),
  };
}

// The pose at `alpha` between two blocks (root lerped, rotations slerped), written into `out` (Float32Array 99).
export function interpolate(a, b, alpha, out) {
  for (let i = 0; i < 3; i++) out[i] = a[i] + (b[i] - a[i]) * alpha;
  for (let j = 0; j < JOINTS; j++) {
    const o = 3 + 4 * j;
    let bw = b[o], bx = b[o + 1], by = b[o + 2], bz = b[o + 3];
    let dot = a[o] * bw + a[o + 1] * bx + a[o + 2] * by + a[o + 3] * bz;
    if (dot < 0) { dot = -dot; bw = -bw; bx = -bx; by = -by; bz = -bz; } // the shorter way round
    let wa = 1 - alpha, wb = alpha;
    if (dot < 0.9995) {
      const theta = Math.acos(dot), s = Math.sin(theta);
      wa = Math.sin((1 - alpha) * theta) / s;
      wb = Math.sin(alpha * theta) / s;
    }
    const w = wa * a[o] + wb * bw, x = wa * a[o + 1] + wb * bx, y = wa * a[o + 2] + wb * by, z = wa * a[o + 3] + wb * bz;
    const n = Math.hypot(w, x, y, z) || 1;
    out[o] = w / n; out[o + 1] = x / n; out[o + 2] = y / n; out[o + 3] = z / n;
  }
  return out;
}
