package dev.pocketrec.core;

/** An argument of a request is out of range or of the wrong type. */
public class InvalidRequestException extends RecommenderException {
  private static final long serialVersionUID = 1L;

  public InvalidRequestException(String message) {
    super(message);
  }
}
