// The stage's connection to onbeat, in a worker: frames are received (and their arrival timed) here even while
// the page's main thread is busy drawing or parsing a new avatar. Frames go to the page as transferred buffers.
let socket = null, url = null;

function connect() {
  socket = new WebSocket(url);
  socket.binaryType = 'arraybuffer';
  socket.onmessage = (e) => {
    if (typeof e.data === 'string') postMessage({ text: e.data });
    else postMessage({ frame: e.data, arrival: (performance.timeOrigin + performance.now()) / 1000 }, [e.data]);
  };
  socket.onclose = () => {
    postMessage({ closed: true });
    setTimeout(connect, 1000);
  };
}

onmessage = (e) => {
  if (e.data.connect) { url = e.data.connect; connect(); } else if (socket && socket.readyState === WebSocket.OPEN) socket.send(e.data.send);
};
