package dev.pocketrec.core;

import java.io.IOException;
import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The bundle's catalogue ({@code catalog.json}): every item's id and display metadata (title,
 * brand, categories, price, ...) in bundle order, and its popularity (training interactions),
 * which ranks items for users without a history.
 *
 * <p>Row {@code i} of the catalogue is row {@code i} of the semantic-ID table.
 */
public final class Catalog {

  private final List<String> itemIds;
  private final List<Map<String, Object>> metadata;
  private final double[] popularity;
  private final Map<String, Integer> rows;

  /**
   * A catalogue from its columns.
   *
   * @param itemIds item ids in bundle order; unique.
   * @param metadata display metadata per item (without the id), same length.
   * @param popularity training-interaction counts per item, same length.
   * @throws BundleException if the lengths differ or an id repeats.
   */
  public Catalog(List<String> itemIds, List<Map<String, Object>> metadata, double[] popularity) {
    if (metadata.size() != itemIds.size() || popularity.length != itemIds.size()) {
      throw new BundleException(
          "catalogue columns disagree: " + itemIds.size() + " ids, " + metadata.size()
              + " metadata entries and " + popularity.length + " popularity values");
    }
    Map<String, Integer> lookup = new HashMap<>();
    for (int row = 0; row < itemIds.size(); row++) {
      Integer previous = lookup.put(itemIds.get(row), row);
      if (previous != null) {
        throw new BundleException(
            "catalogue item ids must be unique, but '" + itemIds.get(row) + "' is at rows "
                + previous + " and " + row + "; re-export the bundle");
      }
    }
    List<Map<String, Object>> frozen = new ArrayList<>();
    for (Map<String, Object> entry : metadata) {
      frozen.add(Collections.unmodifiableMap(new LinkedHashMap<>(entry)));
    }
    this.itemIds = Collections.unmodifiableList(new ArrayList<>(itemIds));
    this.metadata = Collections.unmodifiableList(frozen);
    this.popularity = popularity.clone();
    this.rows = lookup;
  }

  /** A catalogue without display metadata (as golden traces carry it). */
  public static Catalog of(List<String> itemIds, double[] popularity) {
    List<Map<String, Object>> empty = new ArrayList<>();
    for (int i = 0; i < itemIds.size(); i++) {
      empty.add(Collections.<String, Object>emptyMap());
    }
    return new Catalog(itemIds, empty, popularity);
  }

  /**
   * Reads {@code catalog.json}.
   *
   * @throws BundleException if the file cannot be read or is malformed.
   */
  public static Catalog read(Path file) {
    Object json;
    try {
      json = Json.parse(new String(Files.readAllBytes(file), StandardCharsets.UTF_8));
    } catch (IOException | IllegalArgumentException e) {
      throw new BundleException(
          "cannot read the bundle's catalogue " + file + ": " + e.getMessage(), e);
    }
    return parse(json);
  }

  /**
   * Builds a catalogue from parsed {@code catalog.json}: {@code {"items": [{"id": ..., "title":
   * ...}, ...], "popularity": [...]}}. Integer ids become their decimal string; a missing
   * popularity counts every item once.
   *
   * @throws BundleException if the structure is not as above.
   */
  public static Catalog parse(Object json) {
    Object items = json instanceof Map ? ((Map<?, ?>) json).get("items") : null;
    if (!(items instanceof List)) {
      throw new BundleException("catalog.json must be an object with an \"items\" list");
    }
    List<String> ids = new ArrayList<>();
    List<Map<String, Object>> metadata = new ArrayList<>();
    for (Object item : (List<?>) items) {
      Object id = item instanceof Map ? ((Map<?, ?>) item).get("id") : null;
      if (!(id instanceof String || id instanceof Long || id instanceof BigInteger)) {
        throw new BundleException(
            "catalog.json item " + ids.size() + " needs an \"id\" that is a string or an integer");
      }
      ids.add(id.toString());
      Map<String, Object> fields = new LinkedHashMap<>();
      for (Map.Entry<?, ?> field : ((Map<?, ?>) item).entrySet()) {
        if (!"id".equals(field.getKey())) {
          fields.put((String) field.getKey(), field.getValue());
        }
      }
      metadata.add(fields);
    }
    Object counts = ((Map<?, ?>) json).get("popularity");
    double[] popularity = new double[ids.size()];
    if (counts == null) {
      Arrays.fill(popularity, 1.0);
    } else if (counts instanceof List && ((List<?>) counts).size() == ids.size()) {
      List<?> values = (List<?>) counts;
      for (int i = 0; i < popularity.length; i++) {
        if (!(values.get(i) instanceof Number)) {
          throw new BundleException("catalog.json popularity[" + i + "] is not a number");
        }
        popularity[i] = ((Number) values.get(i)).doubleValue();
      }
    } else {
      throw new BundleException(
          "catalog.json \"popularity\" must be a list with one number per item ("
              + ids.size() + ")");
    }
    return new Catalog(ids, metadata, popularity);
  }

  /** Number of items. */
  public int size() {
    return itemIds.size();
  }

  public String itemId(int row) {
    return itemIds.get(row);
  }

  /** Every item id, in bundle order. */
  public List<String> itemIds() {
    return itemIds;
  }

  /** Display metadata of one item (everything in catalog.json except the id). */
  public Map<String, Object> metadata(int row) {
    return metadata.get(row);
  }

  /** The item's {@code title} if it has one, otherwise its id. */
  public String title(int row) {
    Object title = metadata.get(row).get("title");
    return title instanceof String ? (String) title : itemIds.get(row);
  }

  /** Training-interaction counts per item (a copy). */
  public double[] popularity() {
    return popularity.clone();
  }

  /** The row of an item id, or -1 if the catalogue does not have it. */
  public int rowOf(String itemId) {
    Integer row = rows.get(itemId);
    return row == null ? -1 : row;
  }
}
