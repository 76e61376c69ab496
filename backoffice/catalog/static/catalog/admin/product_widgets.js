/* The product and variant form widgets (backoffice/catalog/widgets.py): add and remove
   name/value rows, draw tags as removable chips. The forms post the same fields without it. */
(function () {
  "use strict";

  document.documentElement.classList.add("bo-js");

  function clearRow(row) {
    row.querySelectorAll("input").forEach(function (input) {
      input.value = "";
      input.setAttribute("value", "");
      input.removeAttribute("id");
    });
  }

  // A widget with data-max-rows (a variant's three options) offers no row beyond it.
  function isFull(kv) {
    var max = Number(kv.dataset.maxRows || 0);
    return max > 0 && kv.querySelectorAll("[data-bo-kv-row]").length >= max;
  }

  function syncAdd(kv) {
    var add = kv.querySelector("[data-bo-kv-add]");
    if (add) {
      add.disabled = isFull(kv);
    }
  }

  function splitTags(text) {
    var tags = [];
    text.split(",").forEach(function (part) {
      var tag = part.trim();
      if (tag && tags.indexOf(tag) === -1) {
        tags.push(tag);
      }
    });
    return tags;
  }

  function drawTags(widget) {
    var input = widget.querySelector("input");
    var list = widget.querySelector("[data-bo-tags-list]");
    if (!input || !list) {
      return;
    }
    var label = widget.dataset.removeLabel || "Remove";
    list.replaceChildren.apply(list, splitTags(input.value).map(function (tag, index) {
      var item = document.createElement("li");
      item.className = "bo-tag";
      var text = document.createElement("span");
      text.textContent = tag;
      var remove = document.createElement("button");
      remove.type = "button";
      remove.dataset.boTagRemove = String(index);
      remove.setAttribute("aria-label", label + " " + tag);
      remove.textContent = "\u00d7";
      item.append(text, remove);
      return item;
    }));
  }

  document.addEventListener("click", function (event) {
    var add = event.target.closest("[data-bo-kv-add]");
    if (add) {
      event.preventDefault();
      var kv = add.closest("[data-bo-kv]");
      if (isFull(kv)) {
        return;
      }
      var rows = kv.querySelector("[data-bo-kv-rows]");
      var last = rows.querySelector("[data-bo-kv-row]:last-child");
      var row = last.cloneNode(true);
      clearRow(row);
      rows.appendChild(row);
      row.querySelector("input").focus();
      syncAdd(kv);
      return;
    }
    var remove = event.target.closest("[data-bo-kv-remove]");
    if (remove) {
      event.preventDefault();
      var current = remove.closest("[data-bo-kv-row]");
      var owner = current.closest("[data-bo-kv]");
      if (current.parentElement.querySelectorAll("[data-bo-kv-row]").length > 1) {
        current.remove();
      } else {
        clearRow(current);
      }
      syncAdd(owner);
      return;
    }
    var removeTag = event.target.closest("[data-bo-tag-remove]");
    if (removeTag) {
      event.preventDefault();
      var widget = removeTag.closest("[data-bo-tags]");
      var input = widget.querySelector("input");
      var tags = splitTags(input.value);
      tags.splice(Number(removeTag.dataset.boTagRemove), 1);
      input.value = tags.join(", ");
      input.setAttribute("value", input.value);
      drawTags(widget);
    }
  });

  document.addEventListener("input", function (event) {
    var input = event.target;
    if (!(input instanceof HTMLInputElement)) {
      return;
    }
    // Keep the attribute in step: unfold re-indexes inline rows through their HTML.
    if (input.closest("[data-bo-kv]") || input.closest("[data-bo-tags]")) {
      input.setAttribute("value", input.value);
    }
    var tags = input.closest("[data-bo-tags]");
    if (tags) {
      drawTags(tags);
    }
  });

  document.addEventListener("keydown", function (event) {
    // Enter in a name/value input adds a row instead of saving the whole form.
    if (event.key !== "Enter" || !(event.target instanceof HTMLInputElement)) {
      return;
    }
    var widget = event.target.closest("[data-bo-kv]");
    if (widget) {
      event.preventDefault();
      widget.querySelector("[data-bo-kv-add]").click();
    }
  });

  function init() {
    document.querySelectorAll("[data-bo-tags]").forEach(drawTags);
    document.querySelectorAll("[data-bo-kv]").forEach(syncAdd);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
