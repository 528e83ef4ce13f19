// The browser side of ipydeepvis.widgets.camera.CameraView (an anywidget ES module).
//
// getUserMedia -> a <video> the user sees -> every 1/fps s one frame drawn to an offscreen
// canvas (short side scaled down to frame_size) -> JPEG/PNG bytes -> a custom message
// {type: "frame", id, width, height} with the bytes as its one buffer. The kernel echoes the id
// of the frame the dashboard shows in `shown_frame`; the time from capture to that echo is
// written on the element (data-latency-ms, and data-encode-ms for capture to sent) and in the
// status line; data-frozen-frame is the id of the paused picture a freeze sent. While
// `max_in_flight` frames are sent and not yet shown, no new one is captured (backpressure).

function button(label, cls) {
  const b = document.createElement("button");
  b.className = `jupyter-button widget-button ${cls}`;
  b.textContent = label;
  return b;
}

function render({ model, el }) {
  el.classList.add("deepvis-camera");
  const video = document.createElement("video");
  video.muted = true;
  video.playsInline = true;
  video.className = "deepvis-camera-video";
  const start = button("start camera", "deepvis-camera-start");
  const freeze = button("freeze frame", "deepvis-camera-freeze");
  const row = document.createElement("div");
  row.className = "deepvis-camera-buttons";
  row.append(start, freeze);
  const status = document.createElement("div");
  status.className = "deepvis-camera-status";
  el.append(video, row, status);

  const grab = document.createElement("canvas"); // offscreen: never added to the page
  let stream = null;
  let timer = null;
  let encoding = false;
  let sendAfterEncoding = false; // frozen while a frame was encoding: send the paused one next
  let nextId = 1;
  let opening = false;
  const capturedAt = new Map(); // frame id -> performance.now() when drawn from the video

  function say(text, isError = false) {
    status.textContent = text;
    status.classList.toggle("deepvis-error", isError);
  }

  function fail(text) {
    model.set("error", text);
    model.set("running", false);
    model.save_changes();
    say(text, true);
  }

  function send(final = false) { // final: the paused picture of a freeze
    const vw = video.videoWidth;
    const vh = video.videoHeight;
    if (!stream || encoding || !vw || !vh) return;
    const scale = Math.min(1, model.get("frame_size") / Math.min(vw, vh)); // never upscale
    grab.width = Math.max(1, Math.round(vw * scale));
    grab.height = Math.max(1, Math.round(vh * scale));
    grab.getContext("2d").drawImage(video, 0, 0, grab.width, grab.height);
    const id = nextId++;
    capturedAt.set(id, performance.now());
    encoding = true;
    grab.toBlob(async (blob) => {
      try {
        if (!blob || !stream) return;
        const bytes = await blob.arrayBuffer();
        model.send({ type: "frame", id, width: grab.width, height: grab.height },
          undefined, [bytes]);
        el.dataset.sentFrames = String(id);
        if (final) el.dataset.frozenFrame = String(id);
        el.dataset.encodeMs = (performance.now() - capturedAt.get(id)).toFixed(1);
      } finally {
        encoding = false;
        if (sendAfterEncoding) {
          sendAfterEncoding = false;
          send(true);
        }
      }
    }, model.get("format"), model.get("quality"));
  }

  function inFlight() { // frames sent but not shown yet (a lost one counts for 2 s only)
    const now = performance.now();
    let count = 0;
    for (const [id, t] of capturedAt) {
      if (now - t > 2000) capturedAt.delete(id); else count++;
    }
    return count;
  }

  function tick() {
    // a dashboard slower than fps would drop the extra frames anyway: do not even send them
    if (!model.get("frozen") && video.readyState >= 2 &&
        inFlight() < model.get("max_in_flight")) send();
  }

  function schedule() {
    clearInterval(timer);
    timer = stream ? setInterval(tick, 1000 / model.get("fps")) : null;
  }

  async function open() {
    if (stream || opening) return;
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      fail("no camera API on this page: browsers allow the camera only over HTTPS or " +
        "on localhost");
      return;
    }
    opening = true;
    say("asking for the camera ...");
    try {
      const media = await navigator.mediaDevices.getUserMedia({
        video: { width: { ideal: 640 }, height: { ideal: 480 } }, audio: false });
      if (!model.get("running")) { // stopped while the browser asked
        media.getTracks().forEach((t) => t.stop());
        return;
      }
      stream = media;
      video.srcObject = stream;
      await video.play();
      model.set("error", "");
      model.save_changes();
      say(`camera on, ${model.get("fps")} frames/s`);
      schedule();
    } catch (err) {
      const why = err && err.name === "NotAllowedError" ? "permission denied"
        : err && err.name === "NotFoundError" ? "no camera found" : "camera unavailable";
      fail(`${why} (${err && err.name}: ${err && err.message})`);
    } finally {
      opening = false;
    }
  }

  function close() {
    if (stream) stream.getTracks().forEach((t) => t.stop());
    stream = null;
    video.srcObject = null;
    schedule();
  }

  function sync() {
    const running = model.get("running");
    const frozen = model.get("frozen");
    start.textContent = running ? "stop camera" : "start camera";
    freeze.textContent = frozen ? "live" : "freeze frame";
    freeze.disabled = !running;
    el.dataset.running = String(running);
    el.dataset.frozen = String(frozen);
    if (running) open(); else { close(); if (!model.get("error")) say("camera off"); }
  }

  function onFrozen() {
    sync();
    if (!stream) return;
    if (model.get("frozen")) {
      video.pause();
      // the dashboard shows exactly the picture that stays on screen (after the frame being
      // encoded, if one is: it was captured before the pause)
      if (encoding) sendAfterEncoding = true; else send(true);
    } else {
      sendAfterEncoding = false;
      delete el.dataset.frozenFrame;
      video.play();
    }
  }

  function onShown() {
    const id = model.get("shown_frame");
    const t0 = capturedAt.get(id);
    if (t0 === undefined) return;
    const ms = performance.now() - t0;
    for (const k of capturedAt.keys()) if (k <= id) capturedAt.delete(k);
    el.dataset.shownFrame = String(id);
    el.dataset.latencyMs = ms.toFixed(1);
    if (stream) say(`frame ${id} shown ${ms.toFixed(0)} ms after capture` +
      (model.get("frozen") ? " (frozen)" : ""));
  }

  start.addEventListener("click", () => {
    model.set("running", !model.get("running"));
    model.set("frozen", false);
    model.save_changes();
  });
  freeze.addEventListener("click", () => {
    model.set("frozen", !model.get("frozen"));
    model.save_changes();
  });
  model.on("change:running", sync);
  model.on("change:frozen", onFrozen);
  model.on("change:fps", schedule);
  model.on("change:shown_frame", onShown);
  sync();
  return () => { // the view is removed: the camera light goes off
    model.off("change:running", sync);
    model.off("change:frozen", onFrozen);
    model.off("change:fps", schedule);
    model.off("change:shown_frame", onShown);
    close();
  };
}

export default { render };
