"""The only part of lggdemo that imports Streamlit: widgets shared by the pages."""
