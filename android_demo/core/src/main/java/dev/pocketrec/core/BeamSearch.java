package dev.pocketrec.core;

import java.util.Arrays;

/**
 * Constrained beam search over semantic IDs for one user, with the model step injected.
 *
 * <p>A port of the Python SDK's {@code pocketrec._search.beam_search}. At every level only the
 * codes that continue a beam's prefix become candidates, and the beam's logits are renormalised
 * over them ({@link ChildLogSoftmax}), so every finished beam is an existing item and its score is
 * its log-probability under the model. Candidates are ranked by score, ties by their flat index
 * {@code beam * codebookSize + code} ({@link Ranking}); the beam is widened by {@code extraWidth}
 * at every level but the last, and at the last level the candidates of excluded items score -inf.
 * The next level has as many beams as were kept, never more than there were candidates; beams
 * scoring -inf (or NaN) are passed to the model but have no continuations, and when no beam has
 * any, the next level gets one such dead beam with all-zero codes, as the Python search does.
 */
public final class BeamSearch {

  /** The model's next-level logits for a set of beams. */
  public interface Step {
    /**
     * Logits of {@code level}'s codes for each beam.
     *
     * @param prefix (beams, numLevels - 1): the chosen code of level j for j &lt; level, and
     *     codebookSize (the empty code) for j &ge; level.
     * @param level the level being decoded, from 0.
     * @return (beams, codebookSize) logits.
     */
    float[][] logits(long[][] prefix, int level);
  }

  /** Top-k items, best first, padded with -1 items, -inf scores and -1 codes. */
  public static final class Result {
    private final int[] items;
    private final double[] logProbs;
    private final int[][] semanticIds;

    Result(int[] items, double[] logProbs, int[][] semanticIds) {
      this.items = items;
      this.logProbs = logProbs;
      this.semanticIds = semanticIds;
    }

    /** Catalogue rows; -1 where fewer items could be reached. */
    public int[] items() {
      return items.clone();
    }

    /** Log-probability of each item; -inf for -1 entries. */
    public double[] logProbs() {
      return logProbs.clone();
    }

    /** Codes of each item; all -1 for -1 entries. */
    public int[][] semanticIds() {
      int[][] copy = new int[semanticIds.length][];
      for (int i = 0; i < copy.length; i++) {
        copy[i] = semanticIds[i].clone();
      }
      return copy;
    }
  }

  /** The candidates of one level: continuations of live beams, in flat-index order. */
  private static final class Candidates {
    final int[] beam;
    final int[] code;
    final double[] score;
    int size;

    Candidates(int capacity) {
      beam = new int[capacity];
      code = new int[capacity];
      score = new double[capacity];
    }

    void add(int b, int c, double s) {
      beam[size] = b;
      code[size] = c;
      score[size++] = s;
    }
  }

  private BeamSearch() {}

  /**
   * Finds the {@code topK} most likely existing items.
   *
   * @param step the model.
   * @param index valid prefixes and the item of every full semantic ID.
   * @param beamWidth beams kept per level; at least {@code topK}.
   * @param topK items returned.
   * @param exclude sorted catalogue rows that must not be returned, or null.
   * @param extraWidth beams added at every level but the last, so that prefixes leading only to
   *     excluded items do not crowd out the others.
   * @throws IllegalArgumentException unless {@code 0 < topK <= beamWidth} and {@code extraWidth
   *     >= 0}.
   */
  public static Result search(
      Step step, PrefixIndex index, int beamWidth, int topK, int[] exclude, int extraWidth) {
    if (topK <= 0 || beamWidth < topK || extraWidth < 0) {
      throw new IllegalArgumentException(
          "need 0 < top_k <= beam_width and extra_width >= 0, got top_k=" + topK + ", beam="
              + beamWidth + ", extra=" + extraWidth);
    }
    int k = index.codebookSize();
    int levels = index.numLevels();
    int[][] codes = {new int[0]}; // one empty beam before the first level
    double[] scores = {0.0};
    for (int level = 0; level < levels; level++) {
      float[][] logits = step.logits(prefixes(codes, levels, k), level);
      if (logits.length != codes.length) {
        throw new IllegalStateException(
            "the model returned " + logits.length + " rows of logits for " + codes.length
                + " beams");
      }
      boolean last = level == levels - 1;
      Candidates cand = expand(index, level, codes, scores, logits);
      if (last && exclude != null) {
        for (int e = 0; e < cand.size; e++) {
          long key = index.key(codes[cand.beam[e]], level) * k + cand.code[e];
          int item = index.item(key);
          if (item >= 0 && Arrays.binarySearch(exclude, item) >= 0) {
            cand.score[e] = Double.NEGATIVE_INFINITY;
          }
        }
      }
      int keep = beamWidth + (last ? 0 : extraWidth);
      int[] chosen = Ranking.top(Arrays.copyOf(cand.score, cand.size), keep);
      int width = Math.min(keep, Math.max(1, cand.size));
      int[][] nextCodes = new int[width][level + 1]; // unfilled beams: zeros, score -inf
      double[] nextScores = new double[width];
      Arrays.fill(nextScores, Double.NEGATIVE_INFINITY);
      for (int slot = 0; slot < chosen.length; slot++) {
        int e = chosen[slot];
        System.arraycopy(codes[cand.beam[e]], 0, nextCodes[slot], 0, level);
        nextCodes[slot][level] = cand.code[e];
        nextScores[slot] = cand.score[e];
      }
      codes = nextCodes;
      scores = nextScores;
    }
    return finish(index, codes, scores, topK);
  }

  /** The decoder's prefix input: chosen codes, then the empty code. */
  private static long[][] prefixes(int[][] codes, int levels, int emptyCode) {
    long[][] prefix = new long[codes.length][levels - 1];
    for (int b = 0; b < codes.length; b++) {
      Arrays.fill(prefix[b], emptyCode);
      for (int j = 0; j < codes[b].length; j++) {
        prefix[b][j] = codes[b][j];
      }
    }
    return prefix;
  }

  /** Scores of every valid continuation of every live beam (score above -inf). */
  private static Candidates expand(
      PrefixIndex index, int level, int[][] codes, double[] scores, float[][] logits) {
    int k = index.codebookSize();
    int[][] children = new int[codes.length][];
    int total = 0;
    for (int b = 0; b < codes.length; b++) {
      boolean live = scores[b] > Double.NEGATIVE_INFINITY; // as Python's scores > -inf: NaN is dead
      children[b] = live ? index.children(level, index.key(codes[b], level)) : new int[0];
      total += children[b].length;
    }
    Candidates cand = new Candidates(total);
    for (int b = 0; b < codes.length; b++) {
      if (children[b].length == 0) {
        continue;
      }
      if (logits[b].length != k) {
        throw new IllegalStateException(
            "the model returned " + logits[b].length + " logits per beam; the codebook has " + k);
      }
      double[] logP = ChildLogSoftmax.apply(logits[b], children[b]);
      for (int i = 0; i < children[b].length; i++) {
        cand.add(b, children[b][i], scores[b] + logP[i]);
      }
    }
    return cand;
  }

  /** Items of the final beams; unreachable ones (score not finite) become -1; pad to topK. */
  private static Result finish(PrefixIndex index, int[][] codes, double[] scores, int topK) {
    int[] items = new int[topK];
    double[] logProbs = new double[topK];
    int[][] semanticIds = new int[topK][];
    Arrays.fill(items, -1);
    Arrays.fill(logProbs, Double.NEGATIVE_INFINITY);
    int levels = index.numLevels();
    for (int i = 0; i < topK; i++) {
      if (i < codes.length && Double.isFinite(scores[i])) {
        items[i] = index.item(index.key(codes[i], levels));
        semanticIds[i] = codes[i].clone();
      } else {
        semanticIds[i] = new int[levels];
        Arrays.fill(semanticIds[i], -1);
      }
      if (i < codes.length) {
        logProbs[i] = scores[i];
      }
    }
    return new Result(items, logProbs, semanticIds);
  }
}
