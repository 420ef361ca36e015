import streamlit as st

st.title("Train")
st.info("Coming: this page is being built.")
