// Avatars for the stage and the retargeting of onbeat's SMPL-24 poses onto them.
//
// A rig is {root, bone(name), update(dt), name}: `root` goes into the scene, `bone` gives a humanoid bone
// (VRM names: hips, spine, chest, upperChest, leftUpperArm, ...) whose rest rotation is the identity and whose
// frame is aligned with the rig's (a three-vrm "normalized" bone), or null when the avatar lacks it.
// onbeat's frame and three.js's agree (metres, right-handed, y up); a VRM 1.0 avatar, a VRM 0.x one after
// VRMUtils.rotateVRM0, and the mannequin all face +z with their left hand towards +x, as onbeat's dancer does.
import * as THREE from 'three';
import { GLTFLoader } from 'three/addons/loaders/GLTFLoader.js';
import { VRMLoaderPlugin, VRMUtils } from '@pixiv/three-vrm';
import { JOINTS } from './protocol.js';

// SMPL-24 joint → VRM humanoid bone (the palms have none).
export const SMPL_TO_VRM = {
  Pelvis: 'hips', Left_Hip: 'leftUpperLeg', Right_Hip: 'rightUpperLeg', Spine1: 'spine',
  Left_Knee: 'leftLowerLeg', Right_Knee: 'rightLowerLeg', Spine2: 'chest', Left_Ankle: 'leftFoot',
  Right_Ankle: 'rightFoot', Spine3: 'upperChest', Left_Foot: 'leftToes', Right_Foot: 'rightToes', Neck: 'neck',
  Left_Collar: 'leftShoulder', Right_Collar: 'rightShoulder', Head: 'head', Left_Shoulder: 'leftUpperArm',
  Right_Shoulder: 'rightUpperArm', Left_Elbow: 'leftLowerArm', Right_Elbow: 'rightLowerArm',
  Left_Wrist: 'leftHand', Right_Wrist: 'rightHand',
};

// Bones whose rest direction (towards a child) differs between SMPL's rest pose and the avatar's (A-pose or
// T-pose, longer feet): [bone, child bone, SMPL joint, SMPL child joint]. Not the shoulders: SMPL's collar
// bones slope up by 20 degrees where an avatar's are level, and aiming them like SMPL's shrugs the avatar
// (its arms are aimed on their own).
const LIMBS = [];
for (const [side, Side] of [['left', 'Left'], ['right', 'Right']]) {
  LIMBS.push(
    [`${side}UpperLeg`, `${side}LowerLeg`, `${Side}_Hip`, `${Side}_Knee`],
    [`${side}LowerLeg`, `${side}Foot`, `${Side}_Knee`, `${Side}_Ankle`],
    [`${side}Foot`, `${side}Toes`, `${Side}_Ankle`, `${Side}_Foot`],
    [`${side}UpperArm`, `${side}LowerArm`, `${Side}_Shoulder`, `${Side}_Elbow`],
    [`${side}LowerArm`, `${side}Hand`, `${Side}_Elbow`, `${Side}_Wrist`],
    [`${side}Hand`, `${side}MiddleProximal`, `${Side}_Wrist`, `${Side}_Palm`],
  );
}

// --- avatars ------------------------------------------------------------------------------------------------

// A VRM avatar from a URL or an ArrayBuffer (a dropped file).
export async function loadVRM(source, name) {
  const loader = new GLTFLoader();
  loader.register((parser) => new VRMLoaderPlugin(parser));
  const gltf = typeof source === 'string' ? await loader.loadAsync(source) : await loader.parseAsync(source, '');
  const vrm = gltf.userData.vrm;
  if (!vrm) throw new Error(`${name}: not a VRM avatar (a glTF file without VRM humanoid data)`);
  VRMUtils.removeUnnecessaryVertices(gltf.scene);
  VRMUtils.combineSkeletons(gltf.scene);
  if (vrm.meta?.metaVersion === '0') VRMUtils.rotateVRM0(vrm); // VRM 0.x faces -z
  vrm.scene.traverse((o) => { o.frustumCulled = false; }); // skinned bounds do not follow the dance
  return {
    name, root: vrm.scene, vrm,
    bone: (b) => vrm.humanoid.getNormalizedBoneNode(b),
    update: (dt) => vrm.update(dt),
    dispose: () => VRMUtils.deepDispose(vrm.scene),
  };
}

// A clean built-in mannequin: SMPL's own proportions, rigid rounded segments on a humanoid bone tree.
export function buildMannequin(skeleton) {
  const { names, parents, offsets, rest_height: restHeight } = skeleton;
  const root = new THREE.Group();
  root.name = 'mannequin';
  const body = new THREE.MeshStandardMaterial({ color: 0xe9e4da, roughness: 0.55, metalness: 0.0 });
  const joint = new THREE.MeshStandardMaterial({ color: 0x8a8f99, roughness: 0.4, metalness: 0.1 });
  const nodes = names.map((n) => { const o = new THREE.Object3D(); o.name = SMPL_TO_VRM[n] || n; return o; });
  names.forEach((_, j) => {
    const p = parents[j];
    if (p < 0) { nodes[j].position.set(0, restHeight[j], 0); root.add(nodes[j]); } else {
      nodes[j].position.fromArray(offsets[j]);
      nodes[p].add(nodes[j]);
    }
  });
  const index = Object.fromEntries(names.map((n, j) => [n, j]));
  // [from joint, to joint, radius]: a capsule between the two joints, hung on the first.
  const segments = [
    ['Left_Hip', 'Left_Knee', 0.07], ['Right_Hip', 'Right_Knee', 0.07], ['Left_Knee', 'Left_Ankle', 0.052],
    ['Right_Knee', 'Right_Ankle', 0.052], ['Left_Collar', 'Left_Shoulder', 0.05], ['Right_Collar', 'Right_Shoulder', 0.05],
    ['Left_Shoulder', 'Left_Elbow', 0.047], ['Right_Shoulder', 'Right_Elbow', 0.047], ['Left_Elbow', 'Left_Wrist', 0.04],
    ['Right_Elbow', 'Right_Wrist', 0.04], ['Left_Wrist', 'Left_Palm', 0.035], ['Right_Wrist', 'Right_Palm', 0.035],
    ['Neck', 'Head', 0.045], ['Spine1', 'Spine2', 0.115], ['Spine2', 'Spine3', 0.13], ['Spine3', 'Neck', 0.12],
    ['Pelvis', 'Spine1', 0.125],
  ];
  const up = new THREE.Vector3(0, 1, 0);
  for (const [a, b, r] of segments) {
    const d = new THREE.Vector3().fromArray(offsets[index[b]]);
    const mesh = new THREE.Mesh(new THREE.CapsuleGeometry(r, Math.max(d.length() - r, 0.01), 6, 16), body);
    mesh.position.copy(d).multiplyScalar(0.5);
    mesh.quaternion.setFromUnitVectors(up, d.clone().normalize());
    nodes[index[a]].add(mesh);
  }
  const ball = (r, material) => new THREE.Mesh(new THREE.SphereGeometry(r, 20, 14), material);
  for (const n of ['Left_Knee', 'Right_Knee', 'Left_Elbow', 'Right_Elbow', 'Left_Shoulder', 'Right_Shoulder',
    'Left_Hip', 'Right_Hip', 'Left_Wrist', 'Right_Wrist', 'Left_Ankle', 'Right_Ankle']) {
    nodes[index[n]].add(ball(n.endsWith('Hip') ? 0.075 : n.endsWith('Wrist') ? 0.038 : 0.055, joint));
  }
  const head = ball(0.105, body);
  head.scale.set(0.9, 1.12, 1.0);
  head.position.set(0, 0.07, 0.01);
  nodes[index.Head].add(head);
  const hips = new THREE.Mesh(new THREE.CapsuleGeometry(0.1, 0.14, 6, 16), body);
  hips.rotation.z = Math.PI / 2;
  hips.position.set(0, -0.06, 0);
  nodes[index.Pelvis].add(hips);
  for (const side of ['Left', 'Right']) { // a foot from under the ankle to past the toe joint
    const ankle = nodes[index[`${side}_Ankle`]];
    const toe = new THREE.Vector3().fromArray(offsets[index[`${side}_Foot`]]);
    const foot = new THREE.Mesh(new THREE.BoxGeometry(0.085, 0.06, toe.z + 0.13), body);
    foot.position.set(toe.x * 0.6, toe.y - 0.01, (toe.z + 0.13) / 2 - 0.06);
    ankle.add(foot);
  }
  root.traverse((o) => { if (o.isMesh) o.castShadow = true; });
  const bones = Object.fromEntries(nodes.filter((o) => !o.name.includes('_')).map((o) => [o.name, o]));
  return {
    name: 'mannequin', root,
    bone: (b) => bones[b] || null,
    update: () => {},
    dispose: () => root.traverse((o) => { if (o.isMesh) o.geometry.dispose(); }),
  };
}

// The lowest point of the avatar's visible surface (world y): skinned vertices where there is skinning.
export function lowestPoint(root) {
  root.updateMatrixWorld(true);
  const v = new THREE.Vector3();
  let low = Infinity;
  root.traverse((o) => {
    if (!o.isMesh || !o.visible || !o.geometry.attributes.position) return;
    if (o.isSkinnedMesh) o.skeleton.update();
    const n = o.geometry.attributes.position.count;
    for (let i = 0; i < n; i++) {
      o.getVertexPosition(i, v).applyMatrix4(o.matrixWorld);
      if (v.y < low) low = v.y;
    }
  });
  return low;
}

// --- retargeting ----------------------------------------------------------------------------------------------

// Puts SMPL-24 poses (root position + local rotations relative to SMPL's rest pose) on a rig.
// With A(j) the world rotation of SMPL joint j relative to its rest, the avatar's bone b carrying joint s(b)
// gets A(s(b)) C(b), C(b) turning the avatar's rest bone direction onto SMPL's: its local rotation is
// R0^-1 C(p)^-1 A(s(p))^-1 A(s(b)) C(b) R0 (p its nearest present parent bone, R0 the rig's frame).
// Missing optional bones fold into their neighbours: UpperChest's turn goes into Chest, a missing Neck's into
// Head, a missing Shoulder's into the upper arm. The hips travel by the dance's offsets scaled to the avatar's
// legs, and the height is set so the avatar's feet rise above their rest height exactly as far (scaled) as
// SMPL's do: feet planted in the dance are planted on the floor.
export class Retargeter {
  constructor(rig, skeleton) {
    this.rig = rig;
    this.skeleton = skeleton;
    const { names, parents, offsets, rest_height: restHeight } = skeleton;
    this.index = Object.fromEntries(names.map((n, j) => [n, j]));
    rig.root.updateMatrixWorld(true);
    const hips = rig.bone('hips');
    this.frame = hips.parent.getWorldQuaternion(new THREE.Quaternion()); // R0
    this.frameInverse = this.frame.clone().invert();
    const worldPos = (b) => rig.bone(b)?.getWorldPosition(new THREE.Vector3());
    // Which SMPL joint each present bone carries, and its nearest present parent bone.
    this.bones = [];
    const carrier = { ...SMPL_TO_VRM };
    if (!rig.bone('upperChest')) carrier.Spine3 = 'chest'; // fold UpperChest into Chest
    for (let j = 0; j < names.length; j++) {
      const b = SMPL_TO_VRM[names[j]];
      if (!b || !rig.bone(b)) continue;
      let s = j;
      for (let k = 0; k < names.length; k++) if (carrier[names[k]] === b && k !== j && parents[k] === j) s = k;
      let p = parents[j];
      while (p >= 0 && !(SMPL_TO_VRM[names[p]] && rig.bone(SMPL_TO_VRM[names[p]]))) p = parents[p];
      this.bones.push({ name: b, node: rig.bone(b), joint: s, parent: p < 0 ? null : SMPL_TO_VRM[names[p]] });
    }
    this.carried = Object.fromEntries(this.bones.map((e) => [e.name, e.joint]));
    // Rest-direction corrections C(b).
    this.correction = {};
    for (const [b, child, sj, sc] of LIMBS) {
      const from = worldPos(b), to = worldPos(child);
      if (!from) continue;
      if (!to) { // no child bone to aim with: keep the limb's correction (a foot without toes follows the shin)
        const previous = LIMBS.find((l) => l[1] === b);
        if (previous && this.correction[previous[0]]) this.correction[b] = this.correction[previous[0]];
        continue;
      }
      const avatarDir = to.sub(from).normalize();
      const smplDir = new THREE.Vector3().fromArray(offsets[this.index[sc]]).normalize();
      this.correction[b] = new THREE.Quaternion().setFromUnitVectors(avatarDir, smplDir);
    }
    // Proportions: leg length (hips above the ankles) against SMPL's.
    this.hipsRest = worldPos('hips');
    const ankles = ['leftFoot', 'rightFoot'].map((b) => worldPos(b).y);
    const smplAnkles = ['Left_Ankle', 'Right_Ankle'].map((n) => restHeight[this.index[n]]);
    this.scale = (this.hipsRest.y - (ankles[0] + ankles[1]) / 2) /
      (restHeight[0] - (smplAnkles[0] + smplAnkles[1]) / 2);
    this.feet = ['leftFoot', 'rightFoot', 'leftToes', 'rightToes'].filter((b) => rig.bone(b))
      .map((b) => ({ node: rig.bone(b), restY: worldPos(b).y }));
    this.smplFeet = skeleton.feet;
    this.global = Array.from({ length: JOINTS }, () => new THREE.Quaternion());
    this.positions = Array.from({ length: JOINTS }, () => new THREE.Vector3());
    this._q = new THREE.Quaternion();
    this._v = new THREE.Vector3();
  }

  // pose: 99 floats (root xyz, 24 quaternions w, x, y, z) in onbeat's frame.
  apply(pose) {
    const { parents, offsets, rest_height: restHeight } = this.skeleton;
    const G = this.global, P = this.positions, q = this._q;
    for (let j = 0; j < JOINTS; j++) { // SMPL forward kinematics: world rotations and joint positions
      const o = 3 + 4 * j;
      q.set(pose[o + 1], pose[o + 2], pose[o + 3], pose[o]);
      const p = parents[j];
      if (p < 0) { G[j].copy(q); P[j].set(pose[0], pose[1], pose[2]); } else {
        G[j].multiplyQuaternions(G[p], q);
        P[j].fromArray(offsets[j]).applyQuaternion(G[p]).add(P[p]);
      }
    }
    const identity = IDENTITY;
    for (const { name, node, joint, parent } of this.bones) {
      const c = this.correction[name] || identity;
      q.copy(G[joint]).multiply(c);
      if (parent) {
        const inverseParent = this._v2 ||= new THREE.Quaternion();
        inverseParent.copy(G[this.carried[parent]]).multiply(this.correction[parent] || identity).invert();
        q.premultiply(inverseParent);
      }
      node.quaternion.copy(this.frameInverse).multiply(q).multiply(this.frame);
    }
    // Hips: travel scaled to the avatar, then the height that puts the feet where SMPL's are.
    let smplLift = Infinity;
    for (const j of this.smplFeet) smplLift = Math.min(smplLift, P[j].y - restHeight[j]);
    const s = this.scale, hips = this.rig.bone('hips');
    const target = this._v.set(this.hipsRest.x + s * pose[0], this.hipsRest.y + s * (pose[1] - restHeight[0]),
      this.hipsRest.z + s * pose[2]);
    this._placeHips(hips, target);
    let avatarLift = Infinity;
    for (const { node, restY } of this.feet) avatarLift = Math.min(avatarLift, node.getWorldPosition(FOOT).y - restY);
    target.y += s * smplLift - avatarLift;
    this._placeHips(hips, target);
  }

  _placeHips(hips, world) {
    hips.parent.updateWorldMatrix(true, false);
    hips.position.copy(hips.parent.worldToLocal(FOOT.copy(world)));
    hips.updateMatrixWorld(true);
  }

  // Each present bone's local rotation (x, y, z, w), for tests and the HUD.
  boneRotations() {
    return Object.fromEntries(this.bones.map(({ name, node }) => [name, node.quaternion.toArray()]));
  }

  // How far the avatar's lowest foot bone is above its rest height (m).
  footLift() {
    let lift = Infinity;
    for (const { node, restY } of this.feet) lift = Math.min(lift, node.getWorldPosition(FOOT).y - restY);
    return lift;
  }
}

const IDENTITY = new THREE.Quaternion();
const FOOT = new THREE.Vector3();
