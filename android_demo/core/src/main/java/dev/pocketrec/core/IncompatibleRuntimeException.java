package dev.pocketrec.core;

/** The app's ONNX Runtime is older than the version the bundle was exported for. */
public class IncompatibleRuntimeException extends BundleException {
  private static final long serialVersionUID = 1L;

  public IncompatibleRuntimeException(String message) {
    super(message);
  }
}
