package dev.pocketrec.core;

/**
 * An execution provider was requested that this device or ONNX Runtime package cannot offer
 * (for example QNN on a phone without a Qualcomm NPU, or with the standard ONNX Runtime package).
 */
public class ProviderUnavailableException extends RecommenderException {
  private static final long serialVersionUID = 1L;

  public ProviderUnavailableException(String message) {
    super(message);
  }

  public ProviderUnavailableException(String message, Throwable cause) {
    super(message, cause);
  }
}
