package dev.pocketrec.core;

/** What {@link Recommender#recommend} does with history ids the catalogue does not have. */
public enum UnknownPolicy {
  /** Skip them and log a warning (the default). */
  DROP,
  /** Throw {@link UnknownItemException} listing them. */
  RAISE;

  /**
   * The policy named as in the Python SDK: {@code "drop"} or {@code "raise"}.
   *
   * @throws InvalidRequestException for any other name.
   */
  public static UnknownPolicy parse(String name) {
    if ("drop".equals(name)) {
      return DROP;
    }
    if ("raise".equals(name)) {
      return RAISE;
    }
    throw new InvalidRequestException("unknown must be 'drop' or 'raise', got '" + name + "'");
  }
}
