package dev.pocketrec.core;

/**
 * Base class of every error the core throws on purpose, so an app can catch one type.
 *
 * <p>The hierarchy mirrors the Python SDK's ({@code pocketrec._errors}):
 *
 * <pre>
 * RecommenderException
 * ├── BundleException                 missing, altered or unreadable bundle files
 * │   └── IncompatibleRuntimeException   ONNX Runtime older than the bundle needs
 * ├── ProviderUnavailableException    an execution provider this device lacks
 * ├── InvalidRequestException         bad arguments: k, history entries, beam width
 * └── UnknownItemException            history items not in the catalogue
 * </pre>
 *
 * Messages say what was wrong and how to fix it. The exceptions are unchecked: most of them
 * signal a broken bundle or a programming error that a caller cannot recover from locally.
 */
public class RecommenderException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  public RecommenderException(String message) {
    super(message);
  }

  public RecommenderException(String message, Throwable cause) {
    super(message, cause);
  }
}
