package dev.pocketrec.core;

import java.math.BigInteger;
import java.util.Arrays;

/**
 * Which codes may follow a partial semantic ID, and which item a full one is.
 *
 * <p>The same structure as the Python SDK's {@code pocketrec._prefix.PrefixIndex}: a prefix of
 * length {@code l} is packed into one long key (its codes as digits in base {@code
 * codebookSize}, 0 for the empty prefix). For every level the index keeps the sorted keys of
 * the prefixes before that level and, CSR-style, the sorted codes that continue each of them.
 * Lookups are binary searches; building takes a few milliseconds for a catalogue of tens of
 * thousands of items.
 */
public final class PrefixIndex {

  private static final BigInteger KEY_LIMIT = BigInteger.ONE.shiftLeft(62);

  private final int codebookSize;
  private final int numLevels;
  private final int numItems;
  private final long[][] parents; // per level: sorted keys of the prefixes before it
  private final int[][] offsets; // per level: children of parents[i] are codes[offsets[i]..[i+1])
  private final int[][] codes; // per level: child codes, sorted within each parent
  private final long[] fullKeys; // sorted keys of every full semantic ID
  private final int[] fullItems; // the item of each full key

  /**
   * Builds the index.
   *
   * @param semanticIds (num_items, num_levels) codes; row i is item i; rows are unique.
   * @param codebookSize codes per level (every code lies in [0, codebookSize)).
   * @throws IllegalArgumentException on an empty or ragged table, codes out of range, keys that
   *     would not fit 62 bits, or two items with the same semantic ID.
   */
  public PrefixIndex(int[][] semanticIds, int codebookSize) {
    if (semanticIds.length == 0 || semanticIds[0].length == 0) {
      throw new IllegalArgumentException(
          "semantic_ids must be a non-empty (num_items, num_levels) table");
    }
    this.codebookSize = codebookSize;
    this.numLevels = semanticIds[0].length;
    this.numItems = semanticIds.length;
    for (int[] row : semanticIds) {
      if (row.length != numLevels) {
        throw new IllegalArgumentException(
            "semantic_ids rows must all have " + numLevels + " codes");
      }
      for (int code : row) {
        if (code < 0 || code >= codebookSize) {
          throw new IllegalArgumentException(
              "semantic-ID codes must lie in [0, " + codebookSize + "), got " + code);
        }
      }
    }
    if (BigInteger.valueOf(codebookSize).pow(numLevels).compareTo(KEY_LIMIT) >= 0) {
      throw new IllegalArgumentException("codebook_size ** num_levels does not fit a 64-bit key");
    }
    parents = new long[numLevels][];
    offsets = new int[numLevels][];
    codes = new int[numLevels][];
    for (int level = 0; level < numLevels; level++) {
      buildLevel(semanticIds, level);
    }
    long[] keys = new long[numItems];
    for (int i = 0; i < numItems; i++) {
      keys[i] = key(semanticIds[i], numLevels);
    }
    Integer[] order = new Integer[numItems];
    for (int i = 0; i < numItems; i++) {
      order[i] = i;
    }
    Arrays.sort(order, (a, b) -> Long.compare(keys[a], keys[b])); // stable
    fullKeys = new long[numItems];
    fullItems = new int[numItems];
    for (int i = 0; i < numItems; i++) {
      fullKeys[i] = keys[order[i]];
      fullItems[i] = order[i];
      if (i > 0 && fullKeys[i] == fullKeys[i - 1]) {
        throw new IllegalArgumentException(
            "items " + fullItems[i - 1] + " and " + fullItems[i] + " share a semantic ID; add "
                + "the collision level first");
      }
    }
  }

  /** The unique (parent, code) pairs of one level, grouped by parent: one key per child prefix. */
  private void buildLevel(int[][] semanticIds, int level) {
    long[] children = new long[semanticIds.length];
    for (int i = 0; i < children.length; i++) {
      children[i] = key(semanticIds[i], level + 1);
    }
    Arrays.sort(children);
    int unique = 0;
    for (int i = 0; i < children.length; i++) {
      if (i == 0 || children[i] != children[i - 1]) {
        children[unique++] = children[i];
      }
    }
    long[] levelParents = new long[unique];
    int[] levelOffsets = new int[unique + 1];
    int[] levelCodes = new int[unique];
    int count = 0;
    for (int i = 0; i < unique; i++) {
      long parent = children[i] / codebookSize;
      levelCodes[i] = (int) (children[i] % codebookSize);
      if (count == 0 || levelParents[count - 1] != parent) {
        levelParents[count] = parent;
        levelOffsets[count] = i;
        count++;
      }
    }
    levelOffsets[count] = unique;
    parents[level] = Arrays.copyOf(levelParents, count);
    offsets[level] = Arrays.copyOf(levelOffsets, count + 1);
    codes[level] = levelCodes;
  }

  /** The key of the first {@code length} codes of {@code prefix} (0 for the empty prefix). */
  public long key(int[] prefix, int length) {
    long key = 0;
    for (int j = 0; j < length; j++) {
      key = key * codebookSize + prefix[j];
    }
    return key;
  }

  /**
   * The codes that continue a prefix of length {@code level}, ascending; none for a key that is
   * not a valid prefix.
   */
  public int[] children(int level, long prefixKey) {
    int found = Arrays.binarySearch(parents[level], prefixKey);
    if (found < 0) {
      return new int[0];
    }
    return Arrays.copyOfRange(codes[level], offsets[level][found], offsets[level][found + 1]);
  }

  /** The item whose full semantic ID has this key, or -1 if none has. */
  public int item(long fullKey) {
    int found = Arrays.binarySearch(fullKeys, fullKey);
    return found >= 0 ? fullItems[found] : -1;
  }

  public int codebookSize() {
    return codebookSize;
  }

  public int numLevels() {
    return numLevels;
  }

  public int numItems() {
    return numItems;
  }
}
