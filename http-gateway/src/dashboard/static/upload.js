// The dashboard's only script: sends the upload form by XHR so its progress can be shown.
// Without it the form posts as usual; with it the page moves on once the server answered.
"use strict";

(function () {
  var form = document.getElementById("upload");
  var progress = document.getElementById("upload-progress");
  var status = document.getElementById("upload-status");
  if (!form || !progress || !window.FormData || !window.XMLHttpRequest) {
    return;
  }

  function say(text) {
    if (status) {
      status.textContent = text;
    }
  }

  // The message of an error page, as plain text (never inserted as markup).
  function messageOf(html) {
    try {
      var page = new DOMParser().parseFromString(html, "text/html");
      var node = page.querySelector(".error") || page.querySelector("h1");
      return node ? node.textContent.trim() : "";
    } catch (e) {
      return "";
    }
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var data = new FormData(form);
    var button = form.querySelector("button[type=submit]");
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.upload.onprogress = function (e) {
      if (e.lengthComputable && e.total > 0) {
        progress.value = Math.round((e.loaded / e.total) * 100);
      }
    };
    xhr.onload = function () {
      if (xhr.status >= 200 && xhr.status < 400) {
        progress.value = 100;
        say("Uploaded.");
        window.location.assign(xhr.responseURL || form.action);
        return;
      }
      if (button) {
        button.disabled = false;
      }
      say("Upload failed: " + (messageOf(xhr.responseText) || "HTTP " + xhr.status));
    };
    xhr.onerror = function () {
      if (button) {
        button.disabled = false;
      }
      say("Upload failed: the connection was lost.");
    };
    if (button) {
      button.disabled = true;
    }
    progress.value = 0;
    say("Uploading…");
    xhr.send(data);
  });
})();
