// Keyboard moderation for the queue page: j/k select, a approves, r rejects, ? toggles the help.
// Decisions go to the page's own endpoint with fetch; the entry disappears and the next one is selected.
(function () {
  "use strict";

  var list = document.getElementById("queue");
  if (!list) {
    return;
  }
  var help = document.getElementById("shortcut-help");
  var live = document.getElementById("live");
  var empty = document.getElementById("empty");
  var csrf = list.getAttribute("data-csrf");
  var selected = null;
  var busy = false;

  function entries() {
    return Array.prototype.slice.call(list.querySelectorAll("li.entry"));
  }

  function say(text, kind) {
    live.textContent = text;
    live.className = "notice notice-" + (kind || "info");
    live.hidden = false;
  }

  function select(entry) {
    if (selected) {
      selected.classList.remove("selected");
      selected.removeAttribute("aria-current");
    }
    selected = entry || null;
    if (selected) {
      selected.classList.add("selected");
      selected.setAttribute("aria-current", "true");
      selected.focus({ preventScroll: true });
      selected.scrollIntoView({ block: "nearest" });
    }
  }

  function move(step) {
    var all = entries();
    if (!all.length) {
      return;
    }
    var index = all.indexOf(selected);
    var next = index < 0 ? 0 : Math.min(Math.max(index + step, 0), all.length - 1);
    select(all[next]);
  }

  function removeSelected() {
    var all = entries();
    var index = all.indexOf(selected);
    var gone = selected;
    select(all[index + 1] || all[index - 1] || null);
    gone.remove();
    if (!entries().length) {
      if (list.getAttribute("data-has-more") === "true") {
        window.location.assign(list.getAttribute("data-reload"));
        return;
      }
      empty.hidden = false;
    }
  }

  function decide(decision) {
    if (!selected || busy) {
      return;
    }
    busy = true;
    var entry = selected;
    entry.classList.add("working");
    var body = new URLSearchParams();
    body.set("decision", decision);
    fetch(entry.getAttribute("data-url"), {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRF-Token": csrf, "X-Requested-With": "fetch", "Accept": "application/json" },
      body: body
    }).then(function (response) {
      return response.json().catch(function () {
        return { message: "Unerwartete Antwort des Servers (" + response.status + ")." };
      }).then(function (data) {
        return { status: response.status, data: data };
      });
    }).then(function (result) {
      entry.classList.remove("working");
      if (result.status === 200) {
        say(result.data.message, "success");
        removeSelected();
      } else if (result.status === 401) {
        say(result.data.message + " Sie werden zur Anmeldung weitergeleitet.", "error");
        window.location.assign(list.getAttribute("data-reload"));
      } else if (result.status === 409) {
        say(result.data.message, "error");
        entry.classList.add("conflict");
        move(1);
      } else {
        say(result.data.message || "Die Entscheidung konnte nicht gespeichert werden.", "error");
      }
    }).catch(function () {
      entry.classList.remove("working");
      say("Keine Verbindung zum Server. Bitte versuchen Sie es noch einmal.", "error");
    }).then(function () {
      busy = false;
    });
  }

  function toggleHelp(show) {
    help.hidden = show === undefined ? !help.hidden : !show;
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || event.defaultPrevented) {
      return;
    }
    var target = event.target;
    if (target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName))) {
      return;
    }
    var actions = {
      "j": function () { move(1); },
      "k": function () { move(-1); },
      "a": function () { decide("approve"); },
      "r": function () { decide("reject"); },
      "?": function () { toggleHelp(); },
      "Escape": function () { toggleHelp(false); }
    };
    var action = actions[event.key];
    if (action) {
      event.preventDefault();
      action();
    }
  });

  list.addEventListener("click", function (event) {
    var entry = event.target.closest("li.entry");
    if (entry && entry !== selected) {
      select(entry);
    }
  });

  select(entries()[0]);
}());
