// A minimal tus 1.0.0 client over fetch(), for Tests/interop/test_browser.py (tus-js-client's browser bundle is
// not available to the test machines, so the browser runs this instead). It does what a browser client must:
// creation (POST with Upload-Length and Upload-Metadata), PATCH chunks at Upload-Offset, HEAD to resume, all
// cross-origin, so Chromium sends CORS preflights and may read only the headers the server exposes.
"use strict";

const TUS_VERSION = "1.0.0";

// The bytes of test file `seed`: the top byte of a multiplicative hash of the index, so no short period hides
// a chunk written at the wrong offset. test_browser.py computes the same bytes to check what the server stored.
function patternBytes(seed, length) {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) {
    bytes[i] = (Math.imul(i, 2654435761) >>> 24) ^ seed;
  }
  return bytes;
}

// Upload-Metadata: comma-separated "key base64(value)" pairs.
function encodeMetadata(metadata) {
  return Object.entries(metadata)
    .map(([key, value]) => `${key} ${btoa(unescape(encodeURIComponent(value)))}`)
    .join(",");
}

function expectStatus(response, wanted, what) {
  if (response.status !== wanted) {
    throw new Error(`${what}: HTTP ${response.status}, wanted ${wanted}`);
  }
}

// The header a response must carry; null means the server did not send it or did not expose it (CORS).
function requiredHeader(response, name, what) {
  const value = response.headers.get(name);
  if (value === null) throw new Error(`${what}: no ${name} header readable (sent and exposed?)`);
  return value;
}

async function createUpload(endpoint, length, metadata) {
  const response = await fetch(endpoint, {
    method: "POST",
    headers: {
      "Tus-Resumable": TUS_VERSION,
      "Upload-Length": String(length),
      "Upload-Metadata": encodeMetadata(metadata),
    },
  });
  expectStatus(response, 201, "POST");
  // Location may be relative; resolve it against the endpoint as tus-js-client does.
  return new URL(requiredHeader(response, "Location", "POST"), endpoint).href;
}

async function currentOffset(url) {
  const response = await fetch(url, {
    method: "HEAD",
    headers: { "Tus-Resumable": TUS_VERSION },
  });
  expectStatus(response, 200, "HEAD");
  return {
    offset: Number(requiredHeader(response, "Upload-Offset", "HEAD")),
    length: Number(requiredHeader(response, "Upload-Length", "HEAD")),
  };
}

// One PATCH of bytes[offset, end). Returns the server's new offset.
async function patchChunk(url, bytes, offset, end) {
  const response = await fetch(url, {
    method: "PATCH",
    headers: {
      "Tus-Resumable": TUS_VERSION,
      "Upload-Offset": String(offset),
      "Content-Type": "application/offset+octet-stream",
    },
    body: bytes.subarray(offset, end),
  });
  expectStatus(response, 204, `PATCH at ${offset}`);
  const next = Number(requiredHeader(response, "Upload-Offset", "PATCH"));
  if (next !== end) throw new Error(`PATCH at ${offset}: server says ${next}, sent up to ${end}`);
  return next;
}

// PATCHes chunk after chunk from `offset`, stopping at `stopAt` (default: the end). Returns the offset reached.
async function sendChunks(url, bytes, offset, chunkSize, stopAt = bytes.length) {
  while (offset < stopAt) {
    offset = await patchChunk(url, bytes, offset, Math.min(offset + chunkSize, stopAt));
  }
  return offset;
}

// Resumes as a client does after losing its connection or its tab: it knows only the upload URL, asks the
// server how far it got (HEAD) and goes on from there. A 409 (the offset moved under us, e.g. an aborted
// PATCH's bytes were committed after our HEAD) or 423 (the old request still holds the upload) means "ask
// again", a bounded number of times.
async function resumeUpload(url, bytes, chunkSize) {
  const offsetsSeen = [];
  for (let attempt = 0; ; attempt++) {
    const { offset, length } = await currentOffset(url);
    offsetsSeen.push(offset);
    if (length !== bytes.length) throw new Error(`HEAD: Upload-Length ${length}, file has ${bytes.length}`);
    try {
      await sendChunks(url, bytes, offset, chunkSize);
      return offsetsSeen;
    } catch (error) {
      if (attempt >= 5 || !/HTTP (409|423)/.test(String(error))) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

// Several files at once, each as sequential PATCHes: over HTTP/2 their requests are concurrent streams.
async function uploadInParallel(endpoint, files, chunkSize) {
  return Promise.all(
    files.map(async ({ seed, length, name }) => {
      const bytes = patternBytes(seed, length);
      const url = await createUpload(endpoint, length, { filename: name, filetype: "application/octet-stream" });
      const offset = await sendChunks(url, bytes, 0, chunkSize);
      const check = await currentOffset(url);
      return { name, seed, length, url, offset, headOffset: check.offset };
    }),
  );
}

// A request body that yields bytes[from, upTo) and then stays open, as an upload does when its network stalls.
// Chromium streams request bodies only over HTTP/2 or HTTP/3 (`duplex: "half"`): over HTTP/1.1 the fetch fails.
function stalledBody(bytes, from, upTo) {
  let position = from;
  return new ReadableStream({
    pull(controller) {
      if (position >= upTo) return new Promise(() => {}); // never more data, never the end
      const end = Math.min(position + 64 * 1024, upTo);
      controller.enqueue(bytes.slice(position, end));
      position = end;
    },
  });
}

// Uploads `stopAfterChunks` chunks; then starts a PATCH for the rest whose body stalls after `partBytes`, waits
// until HEAD shows the server took those bytes in (or `waitMs` passes), and aborts it (the tab closing, the
// network dropping); then resumes from what HEAD says, knowing only the upload URL.
async function uploadWithInterruption(endpoint, file, chunkSize, stopAfterChunks, partBytes, waitMs) {
  const bytes = patternBytes(file.seed, file.length);
  const url = await createUpload(endpoint, file.length, { filename: file.name });
  const stoppedAt = await sendChunks(url, bytes, 0, chunkSize, stopAfterChunks * chunkSize);
  const controller = new AbortController();
  const interrupted = fetch(url, {
    method: "PATCH",
    headers: {
      "Tus-Resumable": TUS_VERSION,
      "Upload-Offset": String(stoppedAt),
      "Content-Type": "application/offset+octet-stream",
    },
    body: stalledBody(bytes, stoppedAt, stoppedAt + partBytes),
    duplex: "half",
    signal: controller.signal,
  }).then(
    (response) => `answered ${response.status} before the abort`,
    (error) => (error.name === "AbortError" ? "aborted" : `failed: ${error}`),
  );
  const deadline = performance.now() + waitMs;
  let offsetBeforeAbort = stoppedAt;
  while (offsetBeforeAbort < stoppedAt + partBytes && performance.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    offsetBeforeAbort = (await currentOffset(url)).offset;
  }
  controller.abort();
  const abortOutcome = await interrupted;
  const offsetsSeen = await resumeUpload(url, bytes, chunkSize);
  const check = await currentOffset(url);
  return { ...file, url, stoppedAt, offsetBeforeAbort, abortOutcome, offsetsSeen, headOffset: check.offset };
}
