// Live updates for the console's pages: the tenant's event stream, or one job's on the page
// of a job still under way (SSE, REST's camelCase fields), moves every status badge of a job
// shown and extends a job's timeline, without a reload. The page renders the stream position
// it read before its rows, so nothing that happens between the render and the connection is
// missed (an event seen twice sets the same state twice).
"use strict";

(function () {
  const after = document.body.dataset.liveAfter;
  if (!after || !window.EventSource) {
    return;
  }
  const live = document.getElementById("live");
  const job = document.body.dataset.liveJob;
  const url = "/console/events?after=" + encodeURIComponent(after) +
    (job ? "&jobId=" + encodeURIComponent(job) : "");
  const FINAL = ["completed", "failed", "cancelled"];
  let lastStatus = null;
  const stream = new EventSource(url);

  function setStatus(jobId, status) {
    document.querySelectorAll('[data-job-status="' + jobId + '"]').forEach(function (badge) {
      badge.textContent = status;
      badge.className = "badge status-" + status;
    });
    document.querySelectorAll('[data-job-id="' + jobId + '"] rect.node').forEach(function (node) {
      node.setAttribute("class", "node status-" + status);
    });
  }

  function addTimelineRow(envelope) {
    const table = document.getElementById("timeline");
    if (!table || table.dataset.jobId !== String(envelope.event.jobId)) {
      return;
    }
    const step = envelope.event;
    const row = document.createElement("tr");
    [envelope.occurredAt.slice(0, 19).replace("T", " "), step.fromStatus || "—", step.toStatus,
      String(step.attempt), step.actor, step.reason || ""].forEach(function (text) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.appendChild(cell);
    });
    table.tBodies[0].appendChild(row);
  }

  stream.addEventListener("open", function () {
    if (live) {
      live.hidden = false;
    }
  });
  stream.addEventListener("error", function () {
    if (live) {
      live.hidden = true;
    }
    if (job && FINAL.includes(lastStatus)) {
      stream.close(); // the server ends a job's stream once it settled: asking again is moot
    }
  });
  stream.addEventListener("job.transition", function (message) {
    const envelope = JSON.parse(message.data);
    setStatus(envelope.event.jobId, envelope.event.toStatus);
    addTimelineRow(envelope);
    if (String(envelope.event.jobId) === job) {
      lastStatus = envelope.event.toStatus;
    }
  });
})();
