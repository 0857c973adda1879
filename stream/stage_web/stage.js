// The onbeat stage: the live dance (or a recording) on a VRM avatar or the mannequin.
// Query: ?overlay=1 (transparent, no HUD: an OBS Browser Source), ?camera=front (no automatic camera),
// ?token=... (controls, when the stage is open to a network).
import * as THREE from 'three';
import { OrbitControls } from 'three/addons/controls/OrbitControls.js';
import { buildMannequin, loadVRM, lowestPoint, Retargeter } from './avatar.js';
import { decodePose, decodeRecording, FLOATS_PER_DANCER, interpolate } from './protocol.js';

const params = new URLSearchParams(location.search);
const overlay = params.get('overlay') === '1';
const config = await (await fetch('config.json')).json();
const $ = (id) => document.getElementById(id);
if (overlay) document.documentElement.classList.add('overlay');

// --- scene ----------------------------------------------------------------------------------------------------
const renderer = new THREE.WebGLRenderer({ antialias: true, alpha: overlay });
renderer.setPixelRatio(Math.min(window.devicePixelRatio, 2));
renderer.setSize(window.innerWidth, window.innerHeight);
renderer.outputColorSpace = THREE.SRGBColorSpace;
if (overlay) renderer.setClearColor(0x000000, 0);
document.body.prepend(renderer.domElement);

const scene = new THREE.Scene();
if (!overlay) {
  scene.background = new THREE.Color(0x14161c);
  scene.fog = new THREE.Fog(0x14161c, 7, 16);
}
scene.add(new THREE.HemisphereLight(0xf4f1ff, 0x3a3428, 1.6));
const key = new THREE.DirectionalLight(0xffffff, 2.2);
key.position.set(1.5, 3, 2.5);
scene.add(key);
const rim = new THREE.DirectionalLight(0x99aaff, 1.0);
rim.position.set(-2, 2, -2.5);
scene.add(rim);
if (!overlay) {
  const floor = new THREE.Mesh(new THREE.CircleGeometry(30, 64), new THREE.MeshStandardMaterial({ color: 0x1f222b, roughness: 0.95 }));
  floor.rotation.x = -Math.PI / 2;
  scene.add(floor);
  const grid = new THREE.GridHelper(12, 24, 0x3a4050, 0x2a2e38);
  grid.position.y = 0.001;
  scene.add(grid);
}
// A soft contact shadow under the dancer (cheap, and it reads well in software rendering too).
const shadowTexture = (() => {
  const c = document.createElement('canvas');
  c.width = c.height = 128;
  const g = c.getContext('2d');
  const r = g.createRadialGradient(64, 64, 0, 64, 64, 64);
  r.addColorStop(0, 'rgba(0,0,0,0.55)');
  r.addColorStop(1, 'rgba(0,0,0,0)');
  g.fillStyle = r;
  g.fillRect(0, 0, 128, 128);
  return new THREE.CanvasTexture(c);
})();
const shadow = new THREE.Mesh(new THREE.PlaneGeometry(1, 1), new THREE.MeshBasicMaterial({ map: shadowTexture, transparent: true, depthWrite: false }));
shadow.rotation.x = -Math.PI / 2;
shadow.position.y = 0.002;
scene.add(shadow);

const camera = new THREE.PerspectiveCamera(30, window.innerWidth / window.innerHeight, 0.05, 50);
camera.position.set(0, 1.25, 4.6);
const orbit = new OrbitControls(camera, renderer.domElement);
orbit.target.set(0, 0.9, 0);
orbit.enableDamping = true;
orbit.maxPolarAngle = Math.PI * 0.55;
orbit.minDistance = 1;
orbit.maxDistance = 12;
orbit.update();
let autoCamera = params.get('camera') !== 'front';
let lastTouch = -Infinity;
orbit.addEventListener('start', () => { lastTouch = performance.now(); });
window.addEventListener('resize', () => {
  camera.aspect = window.innerWidth / window.innerHeight;
  camera.updateProjectionMatrix();
  renderer.setSize(window.innerWidth, window.innerHeight);
});

// --- avatar ---------------------------------------------------------------------------------------------------
let rig = null, retarget = null, avatarSize = 1, avatarSource = null;
const crowd = []; // a crowd's dancers 1..N-1: {rig, retarget, pose}
let crowdLoading = false;
const status = { avatar: null, avatarError: null, loading: true, dancers: 1 };

function say(text, seconds = 6) {
  const m = $('message');
  m.textContent = text;
  m.style.display = text ? 'block' : 'none';
  if (text && seconds) setTimeout(() => { if (m.textContent === text) m.style.display = 'none'; }, seconds * 1000);
}

// Look at the whole avatar, whatever its height, from the direction the camera has now.
function frameAvatar(height) {
  const direction = camera.position.clone().sub(orbit.target).normalize();
  orbit.target.y = 0.52 * height;
  camera.position.copy(orbit.target).addScaledVector(direction, 2.9 * height);
  orbit.update();
}

async function setAvatar(source, name) {
  status.loading = true;
  try {
    const next = source === 'mannequin' ? buildMannequin(config.skeleton) : await loadVRM(source, name);
    scene.add(next.root);
    next.root.position.y -= lowestPoint(next.root); // stand on the floor (y = 0) at rest
    const nextRetarget = new Retargeter(next, config.skeleton);
    if (rig) { scene.remove(rig.root); rig.dispose(); }
    rig = next;
    retarget = nextRetarget;
    avatarSource = source;
    for (const other of crowd.splice(0)) { scene.remove(other.rig.root); other.rig.dispose(); } // remade as it is
    avatarSize = retarget.scale;
    status.avatar = name;
    status.avatarError = null;
    frameAvatar(new THREE.Box3().setFromObject(next.root, true).max.y);
  } catch (e) {
    status.avatarError = String(e.message || e);
    say(`could not load ${name}: ${status.avatarError}`, 10);
    console.warn(e);
  } finally {
    status.loading = false;
  }
}

const avatarUrl = config.avatar;
await setAvatar(avatarUrl, avatarUrl === 'mannequin' ? 'mannequin' : avatarUrl.split('/').pop());

async function loadFile(file) {
  if (!file.name.toLowerCase().endsWith('.vrm')) { say(`${file.name}: drop a .vrm avatar`); return; }
  await setAvatar(await file.arrayBuffer(), file.name);
}
let dragDepth = 0;
window.addEventListener('dragenter', (e) => { e.preventDefault(); dragDepth++; $('drop').style.display = 'flex'; });
window.addEventListener('dragleave', () => { if (--dragDepth <= 0) { dragDepth = 0; $('drop').style.display = 'none'; } });
window.addEventListener('dragover', (e) => e.preventDefault());
window.addEventListener('drop', (e) => {
  e.preventDefault();
  dragDepth = 0;
  $('drop').style.display = 'none';
  if (e.dataTransfer.files.length) loadFile(e.dataTransfer.files[0]);
});
$('load-avatar').onclick = () => $('avatar-file').click();
$('avatar-file').onchange = (e) => { if (e.target.files.length) loadFile(e.target.files[0]); };
$('mannequin').onclick = () => setAvatar('mannequin', 'mannequin');

// --- a crowd (onbeat play --dancers N): dancers 1.. wear the same avatar ----------------------------------------
async function ensureCrowd(dancers) {
  if (crowdLoading || crowd.length >= dancers - 1 || status.loading) return;
  crowdLoading = true;
  try {
    while (crowd.length < dancers - 1) {
      const other = avatarSource === 'mannequin' ? buildMannequin(config.skeleton) : await loadVRM(avatarSource, status.avatar);
      scene.add(other.root);
      other.root.position.y -= lowestPoint(other.root);
      crowd.push({ rig: other, retarget: new Retargeter(other, config.skeleton), pose: new Float32Array(FLOATS_PER_DANCER) });
    }
    if (status.dancers === 1) { // the first time: step back (and push the fog back) to see the whole crowd
      const latest = buffer[buffer.length - 1].floats;
      let reach = 0;
      for (let d = 0; d < dancers; d++) {
        reach = Math.max(reach, Math.hypot(latest[d * FLOATS_PER_DANCER], latest[d * FLOATS_PER_DANCER + 2]));
      }
      const direction = camera.position.clone().sub(orbit.target).normalize();
      const back = 2.6 * reach;
      orbit.target.set(0, orbit.target.y, 0);
      camera.position.addScaledVector(direction, back);
      if (scene.fog) { scene.fog.near += back; scene.fog.far += back; }
    }
    status.dancers = dancers;
  } catch (e) {
    say(`could not show the crowd: ${e.message || e}`, 10);
  } finally {
    crowdLoading = false;
  }
}

// --- poses in -------------------------------------------------------------------------------------------------
const pose = new Float32Array(FLOATS_PER_DANCER);
const buffer = []; // recent frames {time, dancers, floats} (every dancer's block)
const stats = { received: 0, missed: 0, lastIndex: -1, latencies: [], offsets: [] };
let beatPulse = 0, lastStatus = null, canControl = false, net = null;

function onFrame(data, arrival) { // arrival: Unix seconds, timed by the worker that received it
  const frame = decodePose(data);
  stats.latencies.push(arrival - frame.sent);
  if (stats.latencies.length > 20000) stats.latencies.splice(0, 10000);
  if (stats.lastIndex >= 0 && frame.index > stats.lastIndex + 1) stats.missed += frame.index - stats.lastIndex - 1;
  stats.lastIndex = frame.index;
  stats.received++;
  // The page's playhead runs a frame and a half behind the engine's clock, as seen by the earliest arrivals
  // (a jitter buffer): frames arriving a little late still land before they are shown.
  stats.offsets.push(arrival - performance.timeOrigin / 1000 - frame.time);
  if (stats.offsets.length > 120) stats.offsets.shift();
  buffer.push({ time: frame.time, dancers: frame.dancers, floats: frame.floats.slice() });
  if (buffer.length > 240) buffer.shift();
  if (frame.dancers > 1) ensureCrowd(frame.dancers);
}

function livePose() {
  if (!buffer.length) return false;
  const t = performance.now() / 1000 - Math.min(...stats.offsets) - 1.5 / config.rate;
  let i = buffer.length - 1;
  while (i > 0 && buffer[i - 1].time > t) i--;
  const a = buffer[Math.max(i - 1, 0)], b = buffer[i];
  const alpha = b.time > a.time ? THREE.MathUtils.clamp((t - a.time) / (b.time - a.time), 0, 1) : 1;
  interpolate(a.floats, b.floats, alpha, pose);
  crowd.forEach((other, k) => {
    if (k + 1 >= Math.min(a.dancers, b.dancers)) return;
    const at = (k + 1) * FLOATS_PER_DANCER;
    interpolate(a.floats.subarray(at, at + FLOATS_PER_DANCER), b.floats.subarray(at, at + FLOATS_PER_DANCER), alpha, other.pose);
  });
  return true;
}

function connect() {
  const token = params.get('token');
  net = new Worker('net.js');
  net.onmessage = (e) => {
    if (e.data.frame) { onFrame(e.data.frame, e.data.arrival); return; }
    if (e.data.closed) { $('page-stats').textContent = 'not connected to onbeat (retrying)'; return; }
    const m = JSON.parse(e.data.text);
    if (m.type === 'hello') setControls(m.controls);
    else if (m.type === 'status') showStatus(m);
    else if (m.type === 'beat') { beatPulse = m.downbeat ? 1 : 0.7; showBeat(m.beat_in_bar); }
    else if (m.type === 'control' && !m.ok) say(`${m.address || 'control'}: ${m.error || 'refused'}`);
  };
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  net.postMessage({ connect: `${scheme}://${location.host}/ws${token ? `?token=${encodeURIComponent(token)}` : ''}` });
}

// --- HUD and controls -----------------------------------------------------------------------------------------
const percentile = (values, q) => {
  if (!values.length) return NaN;
  const s = values.slice().sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};

function showBeat(beatInBar) {
  [...$('beats').children].forEach((el, i) => el.classList.toggle('on', i === beatInBar));
}

function showStatus(s) {
  lastStatus = s;
  $('bpm').textContent = s.listening ? '---.-' : s.bpm.toFixed(1);
  $('bpm').title = s.listening ? 'listening (locking onto the beat)' : '';
  $('confidence').style.width = `${Math.round(100 * s.confidence)}%`;
  $('confidence-text').textContent = s.confidence.toFixed(2);
  $('clock-source').textContent = s.clock;
  $('mode').textContent = s.mode === 'idle' ? 'idle (no music)' : s.mode;
  $('style').textContent = s.style || '–';
  $('generation').textContent = `${s.generation_ms.toFixed(1)} ms per slice${s.quality < 1 ? ` (quality ${s.quality.toFixed(2)})` : ''}`;
  $('counters').textContent = `frames ${s.frames} · late ${s.late} · held ${s.held} · dropped ${s.dropped + s.stage_dropped}`;
  const recent = stats.latencies.slice(-300).map((x) => 1000 * x);
  $('page-stats').textContent = `page: latency ${percentile(recent, 0.5).toFixed(1)} ms (p99 ${percentile(recent, 0.99).toFixed(1)}) · missed ${stats.missed}`;
  if (canControl && document.activeElement !== $('energy')) {
    $('energy').value = s.controls.energy;
    $('energy-text').textContent = s.controls.energy.toFixed(2);
  }
  if (canControl && document.activeElement !== $('model')) $('model').value = s.controls.model;
  $('mirror').setAttribute('aria-pressed', String(s.controls.mirror));
  $('hold').setAttribute('aria-pressed', String(s.controls.hold));
}

// Every control goes to onbeat as the OSC control message of the same name (onbeat.stream.control).
function control(address, value) {
  if (net) net.postMessage({ send: JSON.stringify({ type: 'control', address, args: [value] }) });
}

function setControls(allowed) {
  canControl = allowed;
  $('controls').classList.remove('hidden');
  for (const el of $('controls').querySelectorAll('input, select, button')) {
    if (!['load-avatar', 'mannequin', 'auto-camera', 'avatar-file'].includes(el.id)) el.disabled = !allowed;
  }
  $('controls-note').textContent = allowed ? '' : config.needs_token
    ? 'watching only: open the address with ?token=… printed by onbeat to steer the dance' : '';
}

function buildControls() {
  for (const name of config.models) $('model').add(new Option(name, name));
  for (const name of config.styles) $('style-select').add(new Option(name, name));
  $('style-control').classList.toggle('hidden', !config.styles.length);
  for (const name of config.key_poses) {
    const b = document.createElement('button');
    b.textContent = name.replace('_', ' ');
    b.dataset.keyPose = name;
    b.onclick = () => control('/onbeat/keypose', name);
    $('key-poses').append(b);
  }
  $('energy').oninput = () => { $('energy-text').textContent = Number($('energy').value).toFixed(2); };
  $('energy').onchange = () => control('/onbeat/energy', Number($('energy').value));
  $('model').onchange = () => control('/onbeat/model', $('model').value);
  $('style-select').onchange = () => control('/onbeat/style', $('style-select').value);
  for (const id of ['mirror', 'hold']) {
    $(id).onclick = () => control(`/onbeat/${id}`, $(id).getAttribute('aria-pressed') === 'true' ? 0 : 1);
  }
}
$('auto-camera').setAttribute('aria-pressed', String(autoCamera));
$('auto-camera').onclick = () => {
  autoCamera = !autoCamera;
  $('auto-camera').setAttribute('aria-pressed', String(autoCamera));
};

// --- replay (onbeat view) -------------------------------------------------------------------------------------
let recording = null, audio = null, playing = true, replayTime = 0;

async function setUpReplay() {
  recording = decodeRecording(await (await fetch('recording.bin')).arrayBuffer());
  const duration = recording.frames / recording.fps;
  document.body.classList.add('view');
  $('hud').classList.add('hidden');
  $('controls').classList.remove('hidden');
  for (const el of $('controls').querySelectorAll('label, #key-poses, .muted, #mirror, #hold')) el.classList.add('hidden');
  $('transport').classList.remove('hidden');
  if (config.audio) {
    audio = new Audio(URL.createObjectURL(await (await fetch(config.audio)).blob())); // a blob seeks anywhere
    audio.play().catch(() => { playing = false; $('play').textContent = 'play'; });
  }
  $('play').onclick = () => {
    playing = !playing;
    $('play').textContent = playing ? 'pause' : 'play';
    if (audio) { if (playing) audio.play(); else audio.pause(); }
  };
  $('scrub').oninput = () => {
    replayTime = Number($('scrub').value) * duration;
    if (audio) audio.currentTime = replayTime;
  };
  status.duration = duration;
}

function replayPose(dt) {
  const duration = recording.frames / recording.fps;
  if (audio && playing && !audio.paused) replayTime = audio.currentTime;
  else if (playing) replayTime += dt;
  if (replayTime >= duration) { replayTime = 0; if (audio) audio.currentTime = 0; }
  const f = Math.min(replayTime * recording.fps, recording.frames - 1);
  const i = Math.floor(f), n = FLOATS_PER_DANCER * recording.dancers;
  const a = recording.floats.subarray(i * n, i * n + FLOATS_PER_DANCER);
  const b = recording.floats.subarray(Math.min(i + 1, recording.frames - 1) * n, Math.min(i + 1, recording.frames - 1) * n + FLOATS_PER_DANCER);
  interpolate(a, b, f - i, pose);
  if (document.activeElement !== $('scrub')) $('scrub').value = replayTime / duration;
  const m = Math.floor(replayTime / 60);
  $('clock').textContent = `${m}:${(replayTime - 60 * m).toFixed(1).padStart(4, '0')} / ${Math.floor(duration / 60)}:${(duration % 60).toFixed(1).padStart(4, '0')}`;
  return true;
}

// --- the frame loop -------------------------------------------------------------------------------------------
let lastRender = performance.now();
const follow = new THREE.Vector3();
function render() {
  const now = performance.now(), dt = Math.min((now - lastRender) / 1000, 0.1);
  lastRender = now;
  const havePose = recording ? replayPose(dt) : livePose();
  if (rig && havePose) {
    retarget.apply(pose);
    const hips = rig.bone('hips').getWorldPosition(follow);
    shadow.position.set(hips.x, 0.002, hips.z);
    shadow.scale.setScalar(0.9 * avatarSize);
    if (!crowd.length) { // follow the dancer's travel, gently (a crowd keeps to its places: the camera stays)
      orbit.target.x += 0.05 * (hips.x - orbit.target.x);
      orbit.target.z += 0.05 * (hips.z - orbit.target.z);
    }
    for (const other of crowd) other.retarget.apply(other.pose);
  }
  if (rig) rig.update(dt);
  for (const other of crowd) other.rig.update(dt);
  beatPulse = Math.max(0, beatPulse - dt * 4);
  $('pulse').style.opacity = String(0.15 + 0.85 * beatPulse);
  if (autoCamera && performance.now() - lastTouch > 8000) { // a slow swing around the front
    const t = performance.now() / 1000;
    const distance = camera.position.distanceTo(orbit.target);
    const azimuth = 0.55 * Math.sin((2 * Math.PI * t) / 40), elevation = 0.12 + 0.06 * Math.sin((2 * Math.PI * t) / 23);
    const goal = new THREE.Vector3(Math.sin(azimuth) * Math.cos(elevation), Math.sin(elevation), Math.cos(azimuth) * Math.cos(elevation))
      .multiplyScalar(distance).add(orbit.target);
    camera.position.lerp(goal, 0.02);
  }
  orbit.update();
  renderer.render(scene, camera);
  requestAnimationFrame(render);
}

// --- for tests and the curious: window.onbeatStage --------------------------------------------------------------
window.onbeatStage = {
  config, status, stats,
  ready: () => Boolean(rig && !status.loading && (recording || stats.received > 0)),
  bones: () => (retarget ? retarget.boneRotations() : {}),
  hips: () => [rig, ...crowd.map((other) => other.rig)].filter(Boolean)
    .map((r) => r.bone('hips').getWorldPosition(new THREE.Vector3()).toArray()), // [x, y, z] of every dancer
  lowestPoint: () => (rig ? lowestPoint(rig.root) : NaN),
  footLift: () => (retarget ? retarget.footLift() : NaN),
  resetStats: () => { stats.received = 0; stats.missed = 0; stats.lastIndex = -1; stats.latencies = []; },
  lastStatus: () => lastStatus,
  setAvatar,
  seek: (t) => { // replay: stop at `t` seconds
    playing = false;
    $('play').textContent = 'play';
    if (audio) { audio.pause(); audio.currentTime = t; }
    replayTime = t;
  },
};

buildControls();
if (config.mode === 'view') await setUpReplay(); else connect();
requestAnimationFrame(render);
