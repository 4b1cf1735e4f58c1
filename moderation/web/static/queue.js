// Keyboard moderation for the queue page: j/k select, a approves, r rejects, u undoes, ? toggles the help.
// Decisions go to the page's own endpoint with fetch; the entry disappears and the next one is selected.
// The notice of a decision offers "Rückgängig"; an undo puts the entry back where it was. Both answers
// carry the queue sizes, so the tab badges and the total change at once.
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
  var queue = list.getAttribute("data-queue");
  var article = list.getAttribute("data-article");
  var selected = null;
  var busy = false;
  // The last decision made on this page: its undo URL and where its entry stood.
  var last = null;

  function entries() {
    return Array.prototype.slice.call(list.querySelectorAll("li.entry"));
  }

  function say(text, kind, undo) {
    live.textContent = "";
    var message = document.createElement("span");
    message.textContent = text;
    live.appendChild(message);
    if (undo) {
      var button = document.createElement("button");
      button.type = "button";
      button.className = "btn btn-quiet btn-undo";
      button.textContent = "Rückgängig";
      button.addEventListener("click", function () { undoLast(); });
      live.appendChild(button);
    }
    live.className = "notice notice-" + (kind || "info") + (undo ? " undo-notice" : "");
    live.hidden = false;
    var served = document.getElementById("last-decision");
    if (served) {
      served.remove();
    }
  }

  function updateCounts(counts) {
    if (!counts) {
      return;
    }
    Object.keys(counts).forEach(function (name) {
      var badge = document.querySelector('.tabs a[data-queue="' + name + '"] .count');
      if (badge) {
        badge.textContent = String(counts[name]);
      }
    });
    if (Object.prototype.hasOwnProperty.call(counts, queue)) {
      var n = counts[queue];
      var total = document.getElementById("total");
      if (total) {
        total.textContent = n + (n === 1 ? " Kommentar" : " Kommentare") + " insgesamt";
      }
      var current = document.querySelector(".tabs a[aria-current] ");
      var label = current ? current.firstChild.textContent.trim() : "";
      document.title = label + " (" + n + ") " + list.getAttribute("data-title-suffix");
    }
  }

  function post(url, fields) {
    var body = new URLSearchParams();
    Object.keys(fields).forEach(function (name) { body.set(name, fields[name]); });
    body.set("article", article);
    return fetch(url, {
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
    });
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
    var spot = { entry: gone, before: gone.nextElementSibling };
    select(all[index + 1] || all[index - 1] || null);
    gone.remove();
    return spot;
  }

  function afterRemoval() {
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
    post(entry.getAttribute("data-url"), { decision: decision }).then(function (result) {
      entry.classList.remove("working");
      if (result.status === 200) {
        var spot = removeSelected();
        last = { url: result.data.undo_url, entry: spot.entry, before: spot.before };
        say(result.data.message, "success", true);
        updateCounts(result.data.counts);
        afterRemoval();
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

  function undoLast() {
    var served = document.getElementById("last-decision");
    if (!last && served) {
      served.querySelector("form").submit();  // a decision made by form post: undo it the same way
      return;
    }
    if (!last || busy) {
      return;
    }
    busy = true;
    var undo = last;
    post(undo.url, {}).then(function (result) {
      if (result.status === 200) {
        last = null;
        say(result.data.message, "success");
        updateCounts(result.data.counts);
        // Back into this list only if it returned to the queue this page shows.
        if (result.data.queue === queue) {
          var before = undo.before && undo.before.parentNode === list ? undo.before : null;
          list.insertBefore(undo.entry, before);
          undo.entry.classList.remove("conflict");
          empty.hidden = true;
          select(undo.entry);
        }
      } else if (result.status === 401) {
        say(result.data.message + " Sie werden zur Anmeldung weitergeleitet.", "error");
        window.location.assign(list.getAttribute("data-reload"));
      } else {
        last = null;
        say(result.data.message || "Die Entscheidung konnte nicht zurückgenommen werden.", "error");
      }
    }).catch(function () {
      say("Keine Verbindung zum Server. Bitte versuchen Sie es noch einmal.", "error", true);
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
      "u": function () { undoLast(); },
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
