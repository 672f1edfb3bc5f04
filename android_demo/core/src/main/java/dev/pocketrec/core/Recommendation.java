package dev.pocketrec.core;

import java.util.Map;

/** One recommended item: its id, log-probability, semantic ID and display metadata. */
public final class Recommendation {

  private final String itemId;
  private final double logProb;
  private final int[] semanticId;
  private final Map<String, Object> metadata;

  Recommendation(String itemId, double logProb, int[] semanticId, Map<String, Object> metadata) {
    this.itemId = itemId;
    this.logProb = logProb;
    this.semanticId = semanticId.clone();
    this.metadata = metadata;
  }

  /** The catalogue's id of the item. */
  public String itemId() {
    return itemId;
  }

  /**
   * The log-probability the model gives the item as the next one (higher is better). For an
   * empty history it is the item's log share of training interactions.
   */
  public double logProb() {
    return logProb;
  }

  /** The item's semantic ID, one code per level (a copy). */
  public int[] semanticId() {
    return semanticId.clone();
  }

  /** Display metadata from the catalogue (title, brand, categories, price, ...). */
  public Map<String, Object> metadata() {
    return metadata;
  }

  @Override
  public String toString() {
    return itemId + " (" + logProb + ")";
  }
}
