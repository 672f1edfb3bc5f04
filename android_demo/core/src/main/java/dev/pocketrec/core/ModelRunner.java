package dev.pocketrec.core;

/**
 * The model boundary: the bundle's two graphs, run by whatever can run them.
 *
 * <p>The app implements it with ONNX Runtime ({@code OrtModelRunner}); tests implement it by
 * replaying the model outputs that the Python SDK recorded in a golden trace. Everything else
 * (history handling, prefix masks, beam search, adapters) lives in the core and is the same on
 * every platform.
 *
 * <p>Tensor layouts follow the bundle manifest; B is the number of histories, W the number of
 * beams of each, L the history window ({@code max_len}), C the number of levels, D the hidden size and K
 * the codebook size. When a graph has a static batch, the {@link Recommender} pads and chunks the
 * rows, so a runner always receives exactly the batch its graph takes. Implementations must be
 * safe to call from several threads if the recommender is.
 */
public interface ModelRunner {

  /**
   * Runs the encoder.
   *
   * @param historyCodes (B, L, C) int64: the semantic ID of each history item, zeros for padding.
   * @param historyRows (B, L) int64: catalogue row + 1 of each history item, 0 for padding.
   * @return memory (B, L, D) float32.
   */
  float[][][] encode(long[][][] historyCodes, long[][] historyRows);

  /**
   * Runs the decoder for one level. Each user's history comes once and its W beams query it, so
   * the graph projects a history to attention keys and values once per user, not once per beam.
   *
   * @param memory (B, L, D) float32: the encoder output of each user.
   * @param memoryMask (B, L) bool: true where the history has an item.
   * @param prefix (B, W, C - 1) int64: chosen codes of each user's beams, codebook size where not
   *     chosen yet.
   * @param level the level to decode (a scalar int64 tensor in the graph).
   * @return logits (B, W, K) float32.
   */
  float[][][] decode(float[][][] memory, boolean[][] memoryMask, long[][][] prefix, long level);
}
