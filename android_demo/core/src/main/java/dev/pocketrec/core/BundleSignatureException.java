package dev.pocketrec.core;

/**
 * The app pins publisher keys and the bundle is unsigned, signed by a key it does not trust, or
 * changed after it was signed.
 */
public class BundleSignatureException extends BundleException {
  private static final long serialVersionUID = 1L;

  public BundleSignatureException(String message) {
    super(message);
  }

  public BundleSignatureException(String message, Throwable cause) {
    super(message, cause);
  }
}
