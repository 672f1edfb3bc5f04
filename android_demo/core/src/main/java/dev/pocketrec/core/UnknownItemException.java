package dev.pocketrec.core;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/** History items are not in the bundle's catalogue (with {@link UnknownPolicy#RAISE}). */
public class UnknownItemException extends RecommenderException {
  private static final long serialVersionUID = 1L;
  private static final int SHOWN = 10;

  private final List<String> items;

  public UnknownItemException(List<String> items) {
    super(message(items));
    this.items = Collections.unmodifiableList(new ArrayList<>(items));
  }

  /** The ids that the catalogue does not have, in history order. */
  public List<String> items() {
    return items;
  }

  private static String message(List<String> items) {
    StringBuilder shown = new StringBuilder();
    for (int i = 0; i < Math.min(SHOWN, items.size()); i++) {
      shown.append(i == 0 ? "'" : ", '").append(items.get(i)).append('\'');
    }
    if (items.size() > SHOWN) {
      shown.append(" ...");
    }
    return items.size() + " history items are not in the catalogue: " + shown
        + ". Pass UnknownPolicy.DROP to skip them, or export a bundle that includes them.";
  }
}
