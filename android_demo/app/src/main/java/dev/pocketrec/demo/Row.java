package dev.pocketrec.demo;

import android.content.Context;
import android.view.View;
import android.view.ViewGroup;
import android.widget.ArrayAdapter;
import android.widget.TextView;

/** One line of a list: an item's title, and a detail line under it. */
final class Row {
  final String itemId;
  final String title;
  final String detail;

  Row(String itemId, String title, String detail) {
    this.itemId = itemId;
    this.title = title;
    this.detail = detail;
  }

  /** The title: what the list shows first, and what its filter matches. */
  @Override
  public String toString() {
    return title;
  }

  /** A two-line list adapter over rows; its filter matches words of the titles. */
  static final class Adapter extends ArrayAdapter<Row> {
    Adapter(Context context) {
      super(context, android.R.layout.simple_list_item_2, android.R.id.text1);
    }

    @Override
    public View getView(int position, View convertView, ViewGroup parent) {
      View view = super.getView(position, convertView, parent); // text1: the title
      TextView detail = view.findViewById(android.R.id.text2);
      Row row = getItem(position);
      detail.setText(row == null ? "" : row.detail);
      return view;
    }
  }
}
