"""onbeat's VMC stream checked against third-party receivers, not against onbeat's own code:

- the PyPI `vmcp` package (its osc4py3 receiver) parses the live stream: every message is a valid VMC event and
  every bone name a HumanBodyBones name;
- a replica of EasyVirtualMotionCaptureForUnity's apply logic (EVMC4U/ExternalReceiver.cs, gpsnmeajp): Root/Pos
  sets the model's localPosition and localRotation; Bone/Pos is cached per HumanBodyBones name and applied to
  `animator.GetBoneTransform(bone)` (skipped when the avatar lacks the bone) as localRotation, and as
  localPosition too when "Bone Position Synchronize" is on (its default). The avatar is a Unity-like transform
  hierarchy of a real VRM's rest pose (../shared/assets/avatars/cryptovoxels.vrm, which has no UpperChest),
  imported the way UniVRM imports VRM 0.x (z reversed: the avatar faces +z, its left is -x).

With bone positions applied the avatar's joints must be onbeat's own joint positions (Unity frame) within 1 mm;
without, the avatar keeps its proportions. In both its world bone rotations equal onbeat's, its feet stay on
the floor, its left is on its left and it faces +z.
"""
import json
import socket
import struct
import time
from pathlib import Path

import numpy as np
import pytest

from onbeat.choreographers.groove import GrooveChoreographer
from onbeat.core import rotations as R
from onbeat.core.motion import forward_kinematics
from onbeat.core.skeleton import JOINT_INDEX, PARENTS
from onbeat.ear.sources import SyntheticSource
from onbeat.stream.engine import Engine
from onbeat.stream.sinks import VMC_BONES, PoseFrame, Sink, VmcSink, to_unity_position, to_unity_quaternion

AVATAR = Path(__file__).resolve().parents[2] / "shared" / "assets" / "avatars" / "cryptovoxels.vrm"

# UnityEngine.HumanBodyBones, the names Enum.TryParse accepts (LastBone is rejected by EVMC4U itself).
HUMAN_BODY_BONES = (
    "Hips LeftUpperLeg RightUpperLeg LeftLowerLeg RightLowerLeg LeftFoot RightFoot Spine Chest Neck Head "
    "LeftShoulder RightShoulder LeftUpperArm RightUpperArm LeftLowerArm RightLowerArm LeftHand RightHand LeftToes "
    "RightToes LeftEye RightEye Jaw " + " ".join(f"{side}{finger}{part}" for side in ("Left", "Right")
                                                  for finger in ("Thumb", "Index", "Middle", "Ring", "Little")
                                                  for part in ("Proximal", "Intermediate", "Distal"))
    + " UpperChest LastBone").split()


# --- Unity's transform maths, on (x, y, z, w) quaternions -----------------------------------------------------

def unity_multiply(a, b):
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return np.array([aw * bx + ax * bw + ay * bz - az * by, aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw, aw * bw - ax * bx - ay * by - az * bz])


def unity_rotate(q, v):
    """Quaternion * Vector3."""
    xyz, w = np.asarray(q[:3]), q[3]
    t = 2.0 * np.cross(xyz, v)
    return v + w * t + np.cross(xyz, t)


class Transform:
    def __init__(self, name, local_position, local_rotation, parent=None):
        self.name, self.parent = name, parent
        self.localPosition, self.localRotation = np.array(local_position, float), np.array(local_rotation, float)

    @property
    def rotation(self):
        return self.localRotation if self.parent is None else unity_multiply(self.parent.rotation, self.localRotation)

    @property
    def position(self):  # every scale in these avatars is 1
        if self.parent is None:
            return self.localPosition
        return self.parent.position + unity_rotate(self.parent.rotation, self.localPosition)


class Avatar:
    """A VRM 0.x humanoid's rest pose as UniVRM builds it in Unity: the model root, then the glTF nodes."""

    def __init__(self, path, add_upper_chest=False):
        data = Path(path).read_bytes()
        (json_length,) = struct.unpack_from("<I", data, 12)
        gltf = json.loads(data[20:20 + json_length])
        self.model = Transform("model", (0, 0, 0), (0, 0, 0, 1))
        nodes = gltf["nodes"]
        transforms = {}

        def build(index, parent):
            node = nodes[index]
            assert node.get("scale", [1, 1, 1]) == [1, 1, 1]
            x, y, z = node.get("translation", (0, 0, 0))
            qx, qy, qz, qw = node.get("rotation", (0, 0, 0, 1))
            # UniVRM's VRM 0.x import reverses z: (x, y, z) -> (x, y, -z), rotations M R M -> (-qx, -qy, qz, qw)
            transforms[index] = Transform(node.get("name"), (x, y, -z), (-qx, -qy, qz, qw), parent)
            for child in node.get("children", ()):
                build(child, transforms[index])

        for root in gltf["scenes"][gltf.get("scene", 0)]["nodes"]:
            build(root, self.model)
        self.bones = {b["bone"][0].upper() + b["bone"][1:]: transforms[b["node"]]
                      for b in gltf["extensions"]["VRM"]["humanoid"]["humanBones"]}
        if add_upper_chest:
            self._insert_upper_chest()
        self.rest = {name: t.position.copy() for name, t in self.bones.items()}

    def _insert_upper_chest(self):
        """The same avatar with an UpperChest between Chest and the neck and shoulders (rest pose unchanged)."""
        chest = self.bones["Chest"]
        lift = np.array([0.0, 0.6 * self.bones["Neck"].localPosition[1], 0.0])
        upper = Transform("UpperChest", lift, (0, 0, 0, 1), chest)
        for name in ("Neck", "LeftShoulder", "RightShoulder"):
            bone = self.bones[name]
            bone.parent, bone.localPosition = upper, bone.localPosition - lift
        self.bones["UpperChest"] = upper

    def get_bone_transform(self, bone):
        return self.bones.get(bone)  # null for a bone the avatar lacks


class Evmc4uReceiver:
    """ExternalReceiver's Root/Pos and Bone/Pos handling with its defaults (root position and rotation
    synchronised, no cut bones, no filters), `bone_position_synchronize` being "Bone Position Synchronize"."""

    def __init__(self, avatar, bone_position_synchronize=True):
        self.avatar, self.bone_position_synchronize = avatar, bone_position_synchronize
        self.positions, self.rotations = {}, {}  # HumanBodyBonesPositionTable / RotationTable

    def receive(self, address, values):
        if address == "/VMC/Ext/Root/Pos" and all(isinstance(v, float) for v in values[1:8]):
            self.avatar.model.localPosition = np.array(values[1:4])
            self.avatar.model.localRotation = np.array(values[4:8])
        elif address == "/VMC/Ext/Bone/Pos" and all(isinstance(v, float) for v in values[1:8]):
            bone = values[0]
            if bone in HUMAN_BODY_BONES and bone != "LastBone":
                self.positions[bone], self.rotations[bone] = np.array(values[1:4]), np.array(values[4:8])

    def update(self):
        """BoneSynchronizeByTable, once a Unity frame."""
        for bone in self.positions:
            t = self.avatar.get_bone_transform(bone)
            if t is None:
                continue
            if self.bone_position_synchronize:
                t.localPosition = self.positions[bone]
            t.localRotation = self.rotations[bone]


# --- the stream, parsed by vmcp --------------------------------------------------------------------------------

def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def vmcp_receiver():
    """(port, frames): vmcp's osc4py3 receiver on a free port (one per module: osc4py3 cannot start twice in a
    process); `frames(n)` processes what arrived (waiting for n frames) and hands it over as
    [(time, [(address, values), ...])] grouped by /VMC/Ext/T."""
    pytest.importorskip("osc4py3", reason="vmcp's OSC backend: pip install 'vmcp[osc4py3]' (the dev extra)")
    from vmcp.events import BoneTransformEvent, RelativeTimeEvent, RootTransformEvent
    from vmcp.facades import on_receive
    from vmcp.osc import OSC
    from vmcp.osc.backend.osc4py3 import as_comthreads as backend

    events = []
    port = free_udp_port()
    osc = OSC(backend)
    with osc.open():
        receiver = osc.create_receiver("127.0.0.1", port, "onbeat-test").open()
        for kind in (RelativeTimeEvent, RootTransformEvent, BoneTransformEvent):
            on_receive(receiver, kind, events.append)

        def frames(expected, timeout=10.0, quiet_s=0.2):
            deadline = time.monotonic() + timeout
            while sum(isinstance(e, RelativeTimeEvent) for e in events) < expected and time.monotonic() < deadline:
                osc.run()
                time.sleep(0.005)
            # a frame's time comes before the rest of its bundles: wait until nothing more arrives (on a loaded
            # machine the last frame's bones came after its time had been counted)
            count, last_change = len(events), time.monotonic()
            while time.monotonic() - last_change < quiet_s and time.monotonic() < deadline:
                osc.run()
                time.sleep(0.005)
                if len(events) != count:
                    count, last_change = len(events), time.monotonic()
            grouped = []
            for event in events:
                if isinstance(event, RelativeTimeEvent):
                    grouped.append((event.delta, []))
                elif grouped:
                    p, q = event.position, event.rotation
                    joint = getattr(event.joint, "value", event.joint)  # vmcp's Bone enum, or "root"
                    values = (joint, p.x, p.y, p.z, q.x, q.y, q.z, q.w)
                    grouped[-1][1].append((event.address, values))
            events.clear()
            return grouped

        yield port, frames  # leaving `with` terminates osc4py3 (vmcp's Receiver.close trips over its own dict)


def random_frames(count, seed=0):
    rng = np.random.default_rng(seed)
    frames = []
    for index in range(count):
        rotations = R.quat_normalize(rng.normal(size=(24, 4)))
        root = np.array([rng.uniform(-1, 1), rng.uniform(0.5, 1.1), rng.uniform(-1, 1)])
        frames.append(PoseFrame(index / 60, root, rotations, forward_kinematics(root, rotations), index))
    return frames


def world_rotations(rotations):
    world = np.empty_like(rotations)
    for j, p in enumerate(PARENTS):
        world[j] = rotations[j] if p < 0 else R.quat_multiply(world[p], rotations[j])
    return world


def replay(received, frames, avatar, bone_position_synchronize, upper_chest=False):
    """Apply each received frame to the avatar the EVMC4U way; per frame (positions and world rotations of the
    avatar's bones, onbeat's joint positions and world rotations in Unity's frame), keyed by bone name. With
    UpperChest folded into Chest, Chest turns as far as onbeat's Spine3."""
    receiver = Evmc4uReceiver(avatar, bone_position_synchronize)
    by_time = {round(f.time, 4): f for f in frames}
    results = []
    for stamp, messages in received:
        for address, values in messages:
            receiver.receive(address, values)
        receiver.update()
        frame = by_time[round(stamp, 4)]
        expected_rotations = to_unity_quaternion(world_rotations(frame.rotations))
        avatar_pose, onbeat_pose = {}, {}
        for smpl, bone in VMC_BONES:
            t = avatar.get_bone_transform(bone)
            if t is not None:
                turns_as = "Spine3" if bone in ("Chest", "UpperChest") and not upper_chest else smpl
                avatar_pose[bone] = (t.position, t.rotation)
                onbeat_pose[bone] = (to_unity_position(frame.positions[JOINT_INDEX[smpl]]),
                                     expected_rotations[JOINT_INDEX[turns_as]])
        results.append((avatar_pose, onbeat_pose))
    return results


def rotation_error_deg(a, b):
    """The angle between two (x, y, z, w) rotations (atan2 keeps float32-sized errors measurable)."""
    difference = unity_multiply(a * np.array([-1, -1, -1, 1]), b)
    return np.degrees(2 * np.arctan2(np.linalg.norm(difference[:3]), abs(difference[3])))


def test_vmcp_parses_every_message_and_bone(vmcp_receiver):
    port, frames = vmcp_receiver
    sink = VmcSink("127.0.0.1", port)
    sent = random_frames(20)
    for frame in sent:
        sink.send(frame)
    sink.close()
    received = frames(len(sent))
    assert [round(t, 4) for t, _ in received] == [round(f.time, 4) for f in sent]
    for _, messages in received:
        assert [a for a, _ in messages] == ["/VMC/Ext/Root/Pos"] + ["/VMC/Ext/Bone/Pos"] * len(VMC_BONES)
        assert [v[0] for _, v in messages[1:]] == [bone for _, bone in VMC_BONES]
        assert all(values[0] in HUMAN_BODY_BONES for _, values in messages[1:])
        assert all(abs(np.linalg.norm(v[4:8]) - 1) < 1e-5 for _, v in messages)


@pytest.mark.skipif(not AVATAR.exists(), reason=f"avatar not found: {AVATAR}")
@pytest.mark.parametrize("add_upper_chest,upper_chest", [(False, False), (True, False), (True, True)],
                         ids=["no UpperChest", "UpperChest folded", "UpperChest sent"])
def test_evmc4u_with_bone_positions_shows_onbeats_joints(vmcp_receiver, add_upper_chest, upper_chest):
    """Random poses: the joints land on onbeat's own within 1 mm, every bone turned exactly as onbeat's."""
    port, frames = vmcp_receiver
    sink = VmcSink("127.0.0.1", port, upper_chest=upper_chest)
    sent = random_frames(30, seed=1)
    for frame in sent:
        sink.send(frame)
    sink.close()
    avatar = Avatar(AVATAR, add_upper_chest)
    position_error, rotation_error = [], []
    for avatar_pose, onbeat_pose in replay(frames(len(sent)), sent, avatar, True, upper_chest):
        for bone, (position, rotation) in avatar_pose.items():
            if bone == "UpperChest" and not upper_chest:
                continue  # folded into Chest: no joint of its own
            position_error.append(np.linalg.norm(position - onbeat_pose[bone][0]))
            rotation_error.append(rotation_error_deg(rotation, onbeat_pose[bone][1]))
    print(f"EVMC4U replica, bone positions on: max joint error {1000 * max(position_error):.4f} mm, "
          f"max rotation error {max(rotation_error):.4f} deg")
    assert max(position_error) < 1e-3
    assert max(rotation_error) < 0.01


def dance_frames(seconds=3.0):
    """A live dance: the groove engine on the synthetic track, every output frame kept."""
    kept = []
    sink = Sink()
    sink.send = kept.append
    return Engine(SyntheticSource(bpm=120), {"default": GrooveChoreographer()}, [sink]), kept, seconds


def lowest_foot(pose):
    return min(pose[bone][0][1] for bone in ("LeftFoot", "RightFoot", "LeftToes", "RightToes"))


@pytest.mark.skipif(not AVATAR.exists(), reason=f"avatar not found: {AVATAR}")
@pytest.mark.parametrize("bone_position_synchronize", [True, False], ids=["bone positions on", "bone positions off"])
def test_evmc4u_live_dance_is_on_the_floor_facing_forward(vmcp_receiver, bone_position_synchronize):
    port, frames = vmcp_receiver
    engine, kept, seconds = dance_frames()
    vmc = VmcSink("127.0.0.1", port)
    engine.sinks.append(vmc)
    engine.run(seconds)
    vmc.close()
    avatar = Avatar(AVATAR)
    standing = min(avatar.rest[b][1] for b in ("LeftFoot", "RightFoot", "LeftToes", "RightToes"))
    results = replay(frames(len(kept)), kept, avatar, bone_position_synchronize)
    assert len(results) >= 0.9 * len(kept) > 100
    feet, joint_error, rotation_error = [], [], []
    for avatar_pose, onbeat_pose in results:
        # with bone positions the floor is onbeat's (y = 0); without, the avatar's own feet at rest
        feet.append(lowest_foot(avatar_pose) - (0.0 if bone_position_synchronize else standing))
        joint_error += [np.linalg.norm(avatar_pose[b][0] - onbeat_pose[b][0]) for b in avatar_pose]
        rotation_error += [rotation_error_deg(avatar_pose[b][1], onbeat_pose[b][1]) for b in avatar_pose]
        left, right = avatar_pose["LeftUpperLeg"][0], avatar_pose["RightUpperLeg"][0]
        assert left[0] < right[0] and avatar_pose["LeftHand"][0][0] < avatar_pose["RightHand"][0][0]
        forward = np.cross(right - left, avatar_pose["Head"][0] - avatar_pose["Hips"][0])  # Unity: right x up
        assert forward[2] > 0.8 * np.linalg.norm(forward)
        for side in ("Left", "Right"):
            assert avatar_pose[f"{side}Toes"][0][2] > avatar_pose[f"{side}Foot"][0][2]  # toes ahead of the ankle
    feet = np.array(feet)
    print(f"EVMC4U replica, bone positions {'on' if bone_position_synchronize else 'off'}: lowest foot "
          f"{100 * feet.min():+.2f} .. {100 * feet.max():+.2f} cm from the floor over {len(feet)} frames; "
          f"joints vs onbeat max {100 * max(joint_error):.2f} cm")
    assert np.all(np.abs(feet) <= 0.03)
    assert max(rotation_error) < 0.01
    if bone_position_synchronize:
        assert max(joint_error) < 1e-3
