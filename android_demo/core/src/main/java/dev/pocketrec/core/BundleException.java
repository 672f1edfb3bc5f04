package dev.pocketrec.core;

/**
 * The bundle cannot be used: a file is missing or altered, the manifest is invalid or newer than
 * this core reads, a table disagrees with the manifest, or an adapter belongs to another bundle.
 */
public class BundleException extends RecommenderException {
  private static final long serialVersionUID = 1L;

  public BundleException(String message) {
    super(message);
  }

  public BundleException(String message, Throwable cause) {
    super(message, cause);
  }
}
